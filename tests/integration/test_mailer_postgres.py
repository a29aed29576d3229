"""The mailer on PostgreSQL: an email is locked while it is sent, so another mailer skips it,
and a mailer killed in the middle of a send leaves it due at once, not after a lease."""

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from bazaar.notifications.mailer import Mailer
from bazaar.notifications.models import DeliveryStatus
from bazaar.notifications.settings import NotificationsSettings
from bazaar.notifications.wiring import SCHEMA
from bazaar.platform import migrations
from bazaar.platform.db import Database
from bazaar.platform.postgres import drop_database, ensure_database, postgres_database
from bazaar.platform.settings import Env
from tests.notifications.conftest import FAST
from tests.notifications.test_mailer import Sink, email_row, queue_email
from tests.postgres import fresh_database_url, require_server

MAILER = """
import asyncio, sys
from pathlib import Path
from bazaar.notifications.mailer import Mailer
from bazaar.notifications.settings import NotificationsSettings
from bazaar.platform.postgres import postgres_database
from bazaar.platform.settings import Env

settings = NotificationsSettings.from_env(Env({"BAZAAR_SMTP_TIMEOUT": "120"}))
mailer = Mailer(postgres_database("notifications", sys.argv[1]), settings,
                smtp_url=sys.argv[2], mail_dir=Path(sys.argv[3]))
asyncio.run(mailer.send_due())
"""


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    await require_server()
    url = make_url(fresh_database_url())
    await ensure_database(url)
    database = postgres_database("notifications", url.render_as_string(hide_password=False))
    await migrations.upgrade(database, SCHEMA)
    try:
        yield database
    finally:
        await database.dispose()
        await drop_database(url)


async def test_a_mailer_killed_mid_send_leaves_its_email_due_at_once(
    db: Database, tmp_path: Path, smtp_sink: tuple[Sink, int]
) -> None:
    connected = asyncio.Event()

    async def never_greet(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.set()  # the mailer has locked its email and is sending it
        await asyncio.sleep(60)
        writer.close()

    silent = await asyncio.start_server(never_greet, "127.0.0.1", 0)
    silent_port = silent.sockets[0].getsockname()[1]
    email_id = await queue_email(db)
    url = db.primary.url.render_as_string(hide_password=False)
    dying = await asyncio.create_subprocess_exec(
        *[sys.executable, "-c", MAILER, url, f"smtp://127.0.0.1:{silent_port}", str(tmp_path)],
        env={**os.environ, "BAZAAR_LOG_LEVEL": "warning"},
    )
    sink, port = smtp_sink
    settings = NotificationsSettings.from_env(Env(FAST))
    mailer = Mailer(db, settings, smtp_url=f"smtp://127.0.0.1:{port}", mail_dir=tmp_path)
    try:
        async with asyncio.timeout(30):
            await connected.wait()
        assert await mailer.send_due() == 0  # locked by the other mailer: skipped
        dying.send_signal(signal.SIGKILL)
        await asyncio.wait_for(dying.wait(), timeout=10)
        killed_at = time.monotonic()
        while await mailer.send_due() == 0:
            assert time.monotonic() - killed_at < 2, "the killed mailer's email was not due"
            await asyncio.sleep(0.05)
    finally:
        if dying.returncode is None:
            dying.kill()
        silent.close()
    assert (await email_row(db, email_id)).status == DeliveryStatus.SENT
    assert len(sink.received) == 1
