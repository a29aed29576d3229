"""Write transactions begun and ended on the driver, with the session handed to the use case
bound to the same connection.

Through SQLAlchemy's session a transaction cost ~0.45 ms of CPU before its first statement had
run (the session's begin, a pool checkout in a greenlet, BEGIN through the engine's execution
machinery, and as much again to commit and close), against ~0.08 ms for a checkout, BEGIN and
COMMIT on the driver (SQLite, measured apart: docs/performance.md). So `Writer` checks a
connection out of the engine's own pool (its size and timeout hold: on SQLite one writer at a
time, a busy pool a 503), begins there, and hands the use case a `WriteSession` bound to that
connection: statements on the driver (platform/statements.py) run in the transaction at once,
and the ORM, when a use case uses it, joins it (the engine's `begin` finds it begun) and its
commit ends it. A use case that never touches the ORM never pays for the session's
transaction.

How a transaction begins and ends is the driver's: `sqlite3`'s BEGIN IMMEDIATE, COMMIT and
ROLLBACK inline on SQLite; on PostgreSQL asyncpg's transaction as SQLAlchemy's asyncpg adapter
keeps it (the adapter begins it, so the ORM's statements and its commit see the same one).
"""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import Connection, Table, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util import greenlet_spawn

from bazaar.platform import pg_notify, statements
from bazaar.platform.db import WriteSession
from bazaar.platform.observability import log
from bazaar.platform.queries import Query

Committed = Callable[[AsyncConnection], Awaitable[None]]
"""What runs on the connection once its transaction committed (the replicas' WAL position)."""


class Writer:
    """Write transactions on the pooled connections of one database's primary."""

    def __init__(self, engine: AsyncEngine, database: str, count: Callable[[], None]) -> None:
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        self._label = {statements.DATABASE: database, statements.COUNT: count}
        """What a statement run on the driver traces and counts itself as."""

    @asynccontextmanager
    async def transaction(self, committed: Committed | None = None) -> AsyncIterator[WriteSession]:
        """A transaction, committed when the block ends without an error; then `committed`."""
        engine = self._engine.sync_engine
        pooled = await greenlet_spawn(engine.pool.connect)  # waits its turn in the pool
        connection = AsyncConnection(self._engine, Connection(engine, connection=pooled))
        ends = _SqliteEnds(pooled) if self._sqlite else _AsyncpgEnds(pooled)
        session: WriteSession | None = None
        done = False
        try:
            await ends.begin()
            session = WriteSession(bind=connection, expire_on_commit=False)
            session.info.update(self._label)
            session.info[statements.DRIVER] = statements.Driver(engine.dialect, ends.driver)
            yield session
            if _took_part(session):
                await session.commit()  # the ORM's flush, then the commit of them all
            await ends.commit()  # when the ORM took no part
            done = True
        except BaseException:
            await _roll_back(session, ends)
            if ends.broken() and pooled.dbapi_connection is not None:  # unless SQLAlchemy
                pooled.invalidate()  # did: not given back to serve another transaction
            raise
        finally:
            if session is not None and (_took_part(session) or session.identity_map):
                await session.close()
            if not (done and committed is not None):
                await _give_back(connection)
        if committed is not None:
            try:
                await committed(connection)
            finally:
                await _give_back(connection)

    async def insert_rows(
        self, session: WriteSession, table: Table, rows: list[dict[str, Any]]
    ) -> None:
        """`insert_at_commit`'s rows of `table`, in one statement on the driver."""
        await statements.run_many(session, statements.inserting(table, tuple(rows[0])), rows)

    async def notify(self, session: WriteSession, signal: str) -> None:
        """Send `signal` to the listeners of the database when the transaction commits
        (PostgreSQL's pg_notify, platform/pg_notify.py), on the driver."""
        await statements.run(session, _NOTIFY, {"channel": pg_notify.channel(signal)})


_NOTIFY = Query(text("SELECT pg_notify(:channel, '')"))


class _SqliteEnds:
    def __init__(self, pooled: PoolProxiedConnection) -> None:
        self.driver: Any = pooled.driver_connection.sqlite  # type: ignore[union-attr]

    async def begin(self) -> None:
        self.driver.execute("BEGIN IMMEDIATE")

    async def commit(self) -> None:
        self.driver.commit()  # nothing to do when the session's commit ended it

    async def rollback(self) -> None:
        self.driver.rollback()

    def broken(self) -> bool:
        return False


class _AsyncpgEnds:
    def __init__(self, pooled: PoolProxiedConnection) -> None:
        self.driver: Any = pooled.driver_connection
        self._adapter: Any = pooled.dbapi_connection

    async def begin(self) -> None:
        await self._adapter._start_transaction()

    async def commit(self) -> None:
        await greenlet_spawn(self._adapter.commit)  # nothing to do when the session's ended it

    async def rollback(self) -> None:
        await greenlet_spawn(self._adapter.rollback)

    def broken(self) -> bool:
        """Closed under a statement (a server that went away), or left mid-transaction."""
        return bool(self.driver.is_closed() or self._adapter._transaction is not None)


async def _roll_back(session: WriteSession | None, ends: Any) -> None:
    """Undo the transaction; when even that fails (the connection broke), the error that ended
    the transaction is the one raised."""
    try:
        if session is not None and session.in_transaction():
            await session.rollback()
        await ends.rollback()
    except Exception as failure:
        log.warning("rollback_failed", error_type=type(failure).__name__)


async def _give_back(connection: AsyncConnection) -> None:
    """Return the connection to its pool: at once when nothing is left to roll back (nothing
    to await then), else through a close that rolls back."""
    joined = connection.sync_connection
    if joined is not None and not joined.in_transaction():
        joined.close()
    else:
        await connection.close()


def _took_part(session: WriteSession) -> bool:
    """Whether the ORM has work of its own in `session`'s transaction."""
    return session.in_transaction() or bool(session.new or session.dirty or session.deleted)
