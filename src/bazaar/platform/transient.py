"""Which failures mean "a dependency is briefly unavailable", as opposed to "this is wrong".

A transient failure (a database restarting or refusing connections, a connection dropped in
the middle of a statement, a lock or pool wait that ran out, a cache or broker that does not
answer) says nothing about the request or the message: the same work succeeds once the
dependency is back. So the HTTP edge answers it with 503 and `Retry-After`, and a consumer
retries it with backoff for as long as it lasts, without spending the delivery attempts that
are there to set a poison message aside. Everything else is a bug or bad data.
"""

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import asyncpg
import httpx
from aio_pika.exceptions import AMQPConnectionError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeout
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from bazaar.platform.errors import Unavailable

TRANSIENT_SQLSTATES = frozenset(
    {
        "25006",  # read-only transaction: a failed-over primary now a standby, or not yet promoted
        "40001",  # serialization failure
        "40P01",  # deadlock detected: one of the two is chosen to fail and may simply rerun
        "55P03",  # lock not available: lock_timeout ran out behind a long transaction
        "57014",  # query cancelled: a statement timeout
        "57P01",  # admin shutdown: the server is stopping
        "57P02",  # crash shutdown: another backend crashed and the server restarts
        "57P03",  # cannot connect now: the server is starting or in recovery
    }
)
TRANSIENT_SQLSTATE_CLASSES = ("08", "53")
"""Connection exceptions, and insufficient resources (too many connections, out of memory)."""

T = TypeVar("T")
_SQLITE_BUSY = ("database is locked", "database table is locked", "database is busy")

_ALWAYS_TRANSIENT: tuple[type[BaseException], ...] = (
    Unavailable,  # our own word for "a dependency is down"
    PoolTimeout,  # no pooled connection within the pool's timeout: busy, not broken
    ConnectionError,  # refused, reset, aborted, broken pipe
    TimeoutError,  # asyncio's and the socket's
    socket.gaierror,  # a name that did not resolve this time
    RedisConnectionError,
    RedisTimeout,
    AMQPConnectionError,
    httpx.TransportError,
)


def is_transient(error: BaseException) -> bool:
    """True when `error`, or what it wraps, says a dependency is briefly unavailable."""
    return any(_is_transient_itself(cause) for cause in _causes(error))


async def outlast(operation: Callable[[], Awaitable[T]], deadline: float) -> T:
    """`operation()`, run again after each transient failure (backoff from 0.1 s, doubling to
    2 s) until it succeeds; a failure that is not transient, or one past `deadline` (in
    `time.monotonic()` seconds), is raised."""
    delay = 0.1
    while True:
        try:
            return await operation()
        except Exception as error:
            if not is_transient(error) or time.monotonic() + delay > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)


def sqlstate(error: BaseException) -> str | None:
    """The PostgreSQL SQLSTATE that `error`, or what it wraps, carries, if any."""
    for cause in _causes(error):
        state = getattr(cause, "sqlstate", None)
        if isinstance(state, str):
            return state
    return None


def _is_transient_itself(error: BaseException) -> bool:
    if isinstance(error, _ALWAYS_TRANSIENT):
        return True
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, asyncpg.InterfaceError):
        return "closed" in str(error)  # the connection went away under the statement
    if type(error).__name__ == "OperationalError":  # sqlite3's, or SQLAlchemy's adaptation
        return any(busy in str(error) for busy in _SQLITE_BUSY)
    state = getattr(error, "sqlstate", None)
    return isinstance(state, str) and (
        state in TRANSIENT_SQLSTATES or state.startswith(TRANSIENT_SQLSTATE_CLASSES)
    )


def _causes(error: BaseException, depth: int = 6) -> Iterator[BaseException]:
    """`error`, what SQLAlchemy wrapped in it (`orig`), and what each was raised from."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending and len(seen) < depth:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for inner in (getattr(current, "orig", None), current.__cause__):
            if isinstance(inner, BaseException):
                pending.append(inner)
