"""The local mail sink of `bazaar up`: an SMTP server (aiosmtpd) on loopback that keeps every
message it accepts as an `.eml` file, so a person can open what the notifications worker
sent, and `bazaar status` can count it.
"""

import asyncio
import signal
import uuid
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

SUFFIX = ".eml"


class FolderHandler:
    """Writes each message to a file of its own, atomically (a reader never sees half)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        name = f"{uuid.uuid4().hex}{SUFFIX}"
        partial = self.folder / f".{name}.part"
        content = envelope.original_content or b""
        partial.write_bytes(content)
        partial.rename(self.folder / name)
        return "250 Message accepted"


def count_messages(folder: Path) -> int:
    return sum(1 for _ in folder.glob(f"*{SUFFIX}")) if folder.exists() else 0


def run_mail_sink(folder: Path, port: int, host: str = "127.0.0.1") -> None:
    """Serve until SIGTERM or SIGINT."""
    folder.mkdir(parents=True, exist_ok=True)
    controller = Controller(FolderHandler(folder), hostname=host, port=port)
    controller.start()

    async def wait() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()

    try:
        asyncio.run(wait())
    finally:
        controller.stop()
