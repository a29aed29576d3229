"""Background loops (relay, mailer, senders, importers) sleep on a `Waker` between rounds, and
are stopped by `cancel_until_done`."""

import asyncio
import contextlib
from collections.abc import Collection
from typing import Any

RECANCEL_SECONDS = 0.1
"""How long `cancel_until_done` waits for cancelled tasks before cancelling them again."""


async def cancel_until_done(tasks: Collection["asyncio.Future[Any]"]) -> None:
    """Cancel `tasks` and return once every one has ended, cancelling again those still running
    every RECANCEL_SECONDS: a library under a task may swallow a cancellation that reaches it
    just as its own wait ends (Python 3.11's `wait_for`, asyncio issue gh-86296; an
    `asyncio.timeout` whose deadline passed at that moment turns it into a TimeoutError), and
    a task that lost its cancellation runs on for good, so a plain `cancel(); await` hangs."""
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _done, pending = await asyncio.wait(pending, timeout=RECANCEL_SECONDS)


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
