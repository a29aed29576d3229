"""A `Query` (platform/queries.py) on PostgreSQL: one statement on a pooled connection's
asyncpg, outside any transaction, on the server `Database.read` would choose.

Through a read session the statement cost a pool checkout through SQLAlchemy's connection and
session, a BEGIN, the statement, the ROLLBACK of the session's close and the building of an
ORM result: three round trips and a lot of Python (an order and its lines, read 3,000 times on
the machine's server: 0.84-1.14 ms a read, 0.55-0.86 ms of it this process's CPU, against
0.18-0.27 ms and 0.12-0.17 ms here; docs/performance.md). A single SELECT in autocommit reads
one snapshot, so it needs no transaction: a `PgReader` checks a connection out of the engine's
own pool (its size and timeout hold: a busy pool still raises SQLAlchemy's TimeoutError, a
503), runs the statement through asyncpg's statement cache (prepared once per connection) and
gives the connection back with nothing to roll back. Through PgBouncer in transaction pooling
(`postgres.connect_args`: no statement cache) asyncpg parses an unnamed statement and runs it
with no Sync between the two, so PgBouncer keeps both on one server connection.

Values are a session's own: the codecs SQLAlchemy installs on each connection (JSON), then the
result processors SQLAlchemy would choose, which for a numeric column depend on the type the
server returns: a query's first run describes its columns (`described`).
"""

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import asyncpg
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import Pool
from sqlalchemy.util import greenlet_spawn

from bazaar.platform.observability import DB_STATEMENTS
from bazaar.platform.queries import Query, Results, bound, described, processed, traced
from bazaar.platform.transient import is_transient

if TYPE_CHECKING:
    from bazaar.platform.db import ReplicaSession

Rows = list[tuple[Any, ...]]
Admission = Callable[[bool], Awaitable["ReplicaSession | None"]]


class PgReader:
    """The rows of a `Query` on one database's primary or one of its replicas.

    `admitted(fresh)` is `Database.admitted_replica`: the replica's session that may serve the
    read, or None for the primary, each read counted where it goes. A replica's statement is
    bounded and falls back as a `ReplicaSession`'s is: one that fails or does not answer within
    the replica set's `check_timeout` is passed over and the primary serves the read.
    """

    def __init__(self, database: str, primary: AsyncEngine, admitted: Admission) -> None:
        self._primary = primary
        self._admitted = admitted
        self._count = DB_STATEMENTS.labels(database).inc

    async def rows(
        self, query: Query, params: Mapping[str, Any], *, fresh: bool
    ) -> tuple[Rows, bool]:
        """The rows, and whether a replica served them."""
        session = await self._admitted(fresh)
        if session is None:
            return await self.fetch(self._primary, query, params), False
        if session.in_transaction():  # admitting it took a question: the statement follows it
            try:
                found = [tuple(row) for row in await session.execute(query.statement, params)]
                return found, bool(session.info.get("on_replica"))
            finally:
                await session.close()
        replicas = session.replicas
        try:
            on_replica = self.fetch(session.replica.engine, query, params)
            return await replicas.within_bound(on_replica), True
        except Exception as error:
            if not is_transient(error):
                raise
            session.replica_failed(error)
        return await self.fetch(self._primary, query, params), False

    async def fetch(self, engine: AsyncEngine, query: Query, params: Mapping[str, Any]) -> Rows:
        """The rows of `query` on `engine`'s server, whichever it is."""
        sql, values = bound(query.compiled(engine.dialect), params)
        self._count()
        with traced("postgresql", engine.url.database or "", sql):
            return await _on_pooled(
                engine.sync_engine.pool,
                lambda driver: rows_on(driver, query, engine.dialect, sql, values),
            )


_results: dict[Query, Results] = {}
"""Each query's result processors, chosen at its first run (`described`): they depend on the
query and the types the server returns, not on the server or the connection."""


async def rows_on(
    driver: asyncpg.Connection, query: Query, dialect: Dialect, sql: str, values: Sequence[Any]
) -> Rows:
    """The rows of `query` (bound as `sql` and `values`) on an asyncpg connection, through the
    result processors SQLAlchemy would choose; a write transaction's statements come here too
    (platform/statements.py)."""
    results = _results.get(query)
    if results is None:  # unnamed, parsed and run in one exchange: nothing is left on the server
        statement = await driver.prepare(sql, name="")
        records = await statement.fetch(*values)
        coltypes = tuple(attribute.type.oid for attribute in statement.get_attributes())
        results = _results[query] = described(query.compiled(dialect), dialect, coltypes)
    else:  # through asyncpg's statement cache
        records = await driver.fetch(sql, *values)
    return processed(results, records)


async def _on_pooled(pool: Pool, work: Callable[[asyncpg.Connection], Awaitable[Rows]]) -> Rows:
    """`work` on a connection of `pool`, outside any transaction.

    The connection is given back as it is found: an error of the server's leaves it usable (no
    transaction to abort), any other one (a broken connection, a timeout, a cancellation
    mid-statement) in a state unknown, so it is discarded."""
    # a checkout may wait for a connection, or open one: SQLAlchemy's awaits need a greenlet
    connection = await greenlet_spawn(pool.connect)
    driver: asyncpg.Connection = connection.driver_connection  # type: ignore[assignment]
    try:
        found = await work(driver)
    except BaseException as error:
        if isinstance(error, asyncpg.PostgresError) and not driver.is_closed():
            connection.close()
            raise
        connection.invalidate(error)  # closed and given back
        if isinstance(error, asyncpg.InterfaceError | asyncpg.InternalClientError):
            # the connection is not in the state the client expects (the server ended it
            # while it was idle in the pool, say): a broken connection, as OSError is
            raise ConnectionError(f"the connection broke: {error!r}") from error
        raise
    connection.close()  # given back: its reset's rollback has no transaction to end
    return found
