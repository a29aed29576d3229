"""Commits that wake a loop in another process: PostgreSQL's NOTIFY and LISTEN.

An API process writes outbox rows that the service's worker publishes. Without a word from
the writer the worker's relay finds them only at its next poll; with one it starts at once and
can poll rarely. A commit that raised a signal (`db.signal_after_commit`) which no loop of the
same process listens to also sends `NOTIFY bazaar_<signal>` in its transaction (delivered on
commit, dropped on rollback); the relay LISTENs on a connection of its own. Polling stays, as
the fallback for a notification lost while that connection was down (or behind a pooler in
transaction mode, where LISTEN cannot work).
"""

import asyncio
import contextlib
from collections.abc import Callable

import asyncpg
from sqlalchemy.engine import URL

from bazaar.platform.observability import log
from bazaar.platform.pg_urls import driver_dsn

RECONNECT_SECONDS = 1.0
CHECK_SECONDS = 15.0
"""How often the listening connection proves it is alive (a dead peer sends no close)."""


def channel(signal: str) -> str:
    """The channel of `signal`: what a transaction sends it on (`pg_notify`, platform/writer.py)
    and what its listeners LISTEN to."""
    return f"bazaar_{signal}"


async def listen(url: URL, signal: str, wake: Callable[[], None]) -> None:
    """Until cancelled, call `wake` whenever a commit on the database at `url` sends
    `signal`; reconnects after a failure (and wakes then, for what it may have missed)."""
    dsn = driver_dsn(url)  # whole, TLS included: a managed server may accept nothing else
    while True:
        try:
            connection = await asyncpg.connect(dsn, timeout=5)
        except Exception as error:  # refused, timed out, starting up...: try again shortly
            log.warning("listen_connect_failed", signal=signal, error=type(error).__name__)
            await asyncio.sleep(RECONNECT_SECONDS)
            continue
        try:
            await connection.add_listener(channel(signal), lambda *_: wake())
            wake()
            while True:
                await asyncio.sleep(CHECK_SECONDS)
                async with asyncio.timeout(5):
                    await connection.fetchval("SELECT 1")
        except Exception as error:  # reset, closed under us, or no answer: reconnect
            log.warning("listen_connection_lost", signal=signal, error=type(error).__name__)
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await connection.close()
        await asyncio.sleep(RECONNECT_SECONDS)
