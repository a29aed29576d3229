"""A probe: one connection kept open to a PostgreSQL server, to ask it one-value questions
(where its WAL ends, where its replay is, whether it answers) outside any transaction.

The replica monitor asks the primary and every replica five times a second, and readiness
asks every half second. Through a pooled SQLAlchemy connection each question cost a pool
checkout, a BEGIN, the statement and a ROLLBACK: about a quarter of a 0.1-core instance's
quota when it served nothing (`bazaar bench ramp`). On a connection of its own, it is one
round trip of a statement asyncpg prepared once (through PgBouncer, with the connection
arguments of postgres.connect_args, an unnamed one each time).

A question that gets no answer within its bound closes the connection at once (`terminate`:
no cancel request, which a frozen server never acknowledges), and the next question opens a
new one; questions are asked one at a time.
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

Connect = Callable[[], Awaitable[asyncpg.Connection]]


class Probe:
    def __init__(self, connect: Connect, timeout: float = 1.0) -> None:
        self._connect = connect
        self.timeout = timeout
        self._connection: asyncpg.Connection | None = None
        self._generation = 0
        """Counts the connections dropped: a connect that an abandoned question started keeps
        nothing."""
        self._turn = asyncio.Lock()

    async def value(self, query: str) -> Any:
        """The first column of the first row of `query`; TimeoutError past `timeout`, or the
        error the connection or the server raised (the connection is then dropped)."""
        async with self._turn:
            work = asyncio.ensure_future(self._ask(query))
            done, _ = await asyncio.wait({work}, timeout=self.timeout)
            if not done:
                self._drop()  # the question fails at once, its connection closed under it
                work.add_done_callback(_retrieve)
                raise TimeoutError(f"no answer within {self.timeout:g} s")
            try:
                return work.result()
            except BaseException:
                self._drop()
                raise

    async def _ask(self, query: str) -> Any:
        connection = self._connection
        if connection is None or connection.is_closed():
            generation = self._generation
            connection = await self._connect()
            if generation != self._generation:  # abandoned while it connected: not kept
                connection.terminate()
                raise TimeoutError("connected after the question was abandoned")
            self._connection = connection
        return await connection.fetchval(query)

    def _drop(self) -> None:
        self._generation += 1
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            connection.terminate()

    async def close(self) -> None:
        async with self._turn:
            connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), timeout=self.timeout)
            if not connection.is_closed():
                connection.terminate()


def _retrieve(task: "asyncio.Future[Any]") -> None:
    """An abandoned question's failure is expected: read, so that asyncio does not log it."""
    if not task.cancelled():
        task.exception()
