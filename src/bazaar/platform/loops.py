"""Background loops (relay, mailer, senders, importers) sleep on a `Waker` between rounds."""

import asyncio
import contextlib


class Waker:
    """Wakes a background loop when a commit gave it work, or after its poll interval.

    A wake that comes while the loop is busy is kept, so the next `wait` returns at once. It
    waits with `asyncio.timeout`, not `asyncio.wait_for`: on Python 3.11 the latter can
    swallow a cancellation that arrives as the event is set, and the loop then never stops.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._event = asyncio.Event()

    def wake(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.interval):
                await self._event.wait()
        self._event.clear()
