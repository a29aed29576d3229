"""Databases: one per service, typed write and read sessions, and orders split across shards.

A transaction opens at the edge (`async with db.write() as session`) and commits there; use
cases only add and flush. `WriteSession` is a subtype of `ReadSession`: code that only reads
takes either, and a session that may be served by a replica cannot be handed to code that
writes.
"""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import DateTime, Table, TypeDecorator, event, text
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
)
from sqlalchemy.pool import QueuePool

from bazaar.platform import pg_notify
from bazaar.platform.errors import NotFound
from bazaar.platform.loops import cancel_until_done
from bazaar.platform.observability import DB_POOL_CAPACITY, DB_POOL_IN_USE, DB_STATEMENTS
from bazaar.platform.replicas import UNKNOWN, Replica, ReplicaSet
from bazaar.platform.transient import is_transient

if TYPE_CHECKING:
    from bazaar.platform.pg_reads import PgReader
    from bazaar.platform.probe import Probe
    from bazaar.platform.queries import Query, SqliteReader

T = TypeVar("T")
Rows = list[tuple[Any, ...]]


class Timestamp(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, _dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime: use bazaar.platform.clock.utcnow()")
        return value

    def process_result_value(self, value: datetime | None, _dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class ReadSession(AsyncSession):
    """A session that may be served by a replica and may be slightly stale: never writes."""


class WriteSession(ReadSession):
    """A session on the primary: the only kind that may write.

    A subtype of `ReadSession`, so code that only reads takes either, and code that writes
    takes only this one: a replica's session handed to it is a type error.
    """


class ReplicaSession(ReadSession):
    """A read session on a streaming replica whose every statement is bounded.

    A statement the replica does not answer within the replica set's `check_timeout` (it froze,
    or its connection broke mid-transaction) marks the replica down and runs again on
    `fallback`, the primary, as does every later statement of the session: a frozen replica
    costs a read at most that bound, never an error. The abandoned statement finishes or fails
    in the background, then its connection is discarded. What fell back mid-session reads the
    primary's newer snapshot after the replica's older one: harmless for reads that may be
    stale, which are all a replica serves.
    """

    def __init__(
        self,
        replicas: ReplicaSet,
        replica: Replica,
        fallback: Callable[[], Awaitable[ReadSession]],
    ) -> None:
        super().__init__(bind=replica.engine, expire_on_commit=False)
        self.replicas = replicas
        self.replica = replica
        self._open_fallback = fallback
        self._fallback: ReadSession | None = None
        self.info["on_replica"] = True

    async def execute(self, *args: Any, **kwargs: Any) -> Any:  # scalars() comes through here
        return await self._bounded("execute", args, kwargs)

    async def scalar(self, *args: Any, **kwargs: Any) -> Any:
        return await self._bounded("scalar", args, kwargs)

    async def get(self, *args: Any, **kwargs: Any) -> Any:
        return await self._bounded("get", args, kwargs)

    async def get_one(self, *args: Any, **kwargs: Any) -> Any:
        return await self._bounded("get_one", args, kwargs)

    async def close(self) -> None:
        if self._fallback is None:
            await super().close()
        else:  # this session's own connection is discarded once its statement ends
            await self._fallback.close()

    async def _bounded(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self._fallback is None:
            statement = getattr(super(), method)(*args, **kwargs)
            try:
                return await self.replicas.within_bound(statement, cleanup=self.invalidate)
            except Exception as error:
                if not is_transient(error):
                    raise
                self.replica_failed(error)
                self._fallback = await self._open_fallback()
        return await getattr(self._fallback, method)(*args, **kwargs)

    def replica_failed(self, error: Exception) -> None:
        """The replica did not serve a statement (`error`, transient): the read is counted as
        the primary's, and a broken replica is passed over until the monitor sees it again."""
        if isinstance(error, PoolTimeout):  # busy, not broken: the primary serves
            self.replicas.count_read("primary", "replica_busy")
        else:
            self.replicas.mark_down(self.replica, error)
            self.replicas.count_read("primary", "replica_failed")
        self.info["on_replica"] = False


def signal_after_commit(session: WriteSession, name: str) -> None:
    """Wake the listeners of `name` on this database once the transaction has committed:
    this process's through `after_commit`, other processes' by a NOTIFY sent with the commit
    (PostgreSQL).

    This is how a row written for a background loop (an outbox row, a job) gets picked up at
    once instead of at the loop's next poll; a rollback wakes no one.
    """
    session.info.setdefault("signals", set()).add(name)


def insert_at_commit(session: WriteSession, table: Table, row: dict[str, Any]) -> None:
    """Insert `row` into `table` with this transaction, as one of its last statements: the
    rows a transaction collects for a table as it goes (the outbox's events, queued jobs) are
    written together in one Core insert, which costs less than the ORM's unit of work."""
    session.info.setdefault("insert_at_commit", {}).setdefault(table, []).append(row)


def after_commit(session: WriteSession, call: Callable[[], None]) -> None:
    """Call `call` once the transaction has committed (the one hook for it): a metric then
    counts what really happened, once, however often a rolled-back attempt is retried; a
    cache entry is dropped only once the change is there to be read again."""
    session.info.setdefault("after_commit", []).append(call)


def _count_statements(engine: AsyncEngine, database: str) -> None:
    """Count every statement `engine` sends as one of `database`'s (bazaar_db_statements_total).

    The listener runs before every statement: it only increments a counter kept at hand.
    """
    increment = DB_STATEMENTS.labels(database).inc

    def count(*_: Any) -> None:
        increment()

    event.listen(engine.sync_engine, "before_cursor_execute", count)


def _measure_pool(engine: AsyncEngine, database: str) -> None:
    """Publish how much of `engine`'s pool is in use (bazaar_db_pool_in_use, read when
    scraped: nothing on a request's path) and its capacity (its size: every engine here has no
    overflow)."""
    pool = engine.sync_engine.pool
    if isinstance(pool, QueuePool):
        DB_POOL_IN_USE.labels(database).set_function(pool.checkedout)
        DB_POOL_CAPACITY.labels(database).set(pool.size())


@dataclass
class Database:
    """One logical database: a primary for writes and locking reads, and where reads go.

    `reader` is the engine that serves reads when no replica does (SQLite's reader pool, or
    the primary itself); `replicas`, when set, are streaming replicas that serve reads which
    may be slightly stale, with read-your-writes for the signed-in caller.
    """

    name: str
    primary: AsyncEngine
    reader: AsyncEngine | None = None
    replicas: ReplicaSet | None = None
    can_listen: bool = True
    """Whether LISTEN works at `primary`'s URL: not behind a pooler in transaction mode."""
    inline_reader: "SqliteReader | None" = None
    """On SQLite, where `rows` runs a `Query` on the driver itself (platform/queries.py)."""
    probe: "Probe | None" = None
    """On PostgreSQL, the primary's probe (platform/probe.py): readiness and the replica
    monitor ask through it."""
    listeners: dict[str, list[Callable[[], None]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from bazaar.platform.writer import Writer  # which imports this module

        self._inline_statements = DB_STATEMENTS.labels(self.name).inc
        self._writer = Writer(self.primary, self.name, self._inline_statements)
        self._reader = async_sessionmaker(
            self.reader or self.primary, class_=ReadSession, expire_on_commit=False
        )
        replicas = self.replicas.replicas if self.replicas is not None else ()
        for engine in (self.primary, self.reader, *(r.engine for r in replicas)):
            if engine is not None:
                _count_statements(engine, self.name)
        self._driver: PgReader | None = None
        if self.dialect == "postgresql":
            from bazaar.platform import pg_reads  # which imports tracing, which imports this

            primary = self.reader or self.primary
            self._driver = pg_reads.PgReader(self.name, primary, self.admitted_replica)
        _measure_pool(self.primary, self.name)

    def listen(self, signal: str, wake: Callable[[], None]) -> None:
        """Call `wake` after every commit that raised `signal` (see signal_after_commit)."""
        self.listeners.setdefault(signal, []).append(wake)

    @asynccontextmanager
    async def woken_by_others(self, signal: str, wake: Callable[[], None]) -> AsyncIterator[None]:
        """While the block runs, call `wake` after every commit of another process that raised
        `signal` too (PostgreSQL's NOTIFY); nothing where LISTEN cannot work (SQLite, or a
        pooler in transaction mode), where the loop's poll is all there is."""
        if self.dialect != "postgresql" or not self.can_listen:
            yield
            return
        listener = asyncio.create_task(pg_notify.listen(self.primary.url, signal, wake))
        try:
            yield
        finally:
            await cancel_until_done([listener])

    @property
    def dialect(self) -> str:
        return self.primary.dialect.name

    @asynccontextmanager
    async def write(self, *, bookkeeping: bool = False) -> AsyncIterator[WriteSession]:
        """A transaction on the primary, committed when the block ends without an error: begun
        and ended on the driver, its session bound to the same connection (platform/writer.py).

        `bookkeeping` says that it only records a background loop's own progress (a relay
        marking what it published, a worker claiming jobs), which no read waits for: its
        commit does not hold this process's next replica read to a newer WAL position (which
        would cost that read a question to the primary)."""
        committed = None
        if self.replicas is not None and not bookkeeping:
            committed = self.replicas.remember_commit
        async with self._writer.transaction(committed) as session:
            yield session
            await self._before_commit(session)
        for call in session.info.get("after_commit", ()):
            call()

    async def _before_commit(self, session: WriteSession) -> None:
        """The transaction's last statements: its rows collected for insertion at commit, and
        the signals for other processes; its signals for this one are called once committed."""
        for table, rows in session.info.pop("insert_at_commit", {}).items():
            await self._writer.insert_rows(session, table, rows)
        for signal in session.info.get("signals", ()):
            for wake in self.listeners.get(signal, ()):
                after_commit(session, wake)
        for signal in self._signals_for_other_processes(session):
            await self._writer.notify(session, signal)

    def _signals_for_other_processes(self, session: WriteSession) -> list[str]:
        """The signals of this transaction that no loop of this process listens to."""
        if self.dialect != "postgresql":
            return []
        return [s for s in session.info.get("signals", ()) if s not in self.listeners]

    @asynccontextmanager
    async def read(self, *, fresh: bool = False) -> AsyncIterator[ReadSession]:
        """A read-only transaction: on a replica when one may serve it, unless `fresh` asks
        for everything committed so far (a relay's claim, a login after a registration)."""
        session = await self._read_session(fresh)
        try:
            yield session
        finally:
            await session.close()

    async def read_by_id(self, load: Callable[[ReadSession], Awaitable[T]]) -> T:
        """`load` something the caller names by id, on a replica when one may serve; when the
        replica has no such thing, the primary is asked before answering 404, since the id may
        come from a newer write (an order naming the payment a worker has just made)."""
        async with self.read() as session:
            try:
                return await load(session)
            except NotFound:
                if not session.info.get("on_replica"):
                    raise
        async with self.read(fresh=True) as session:
            return await load(session)

    async def rows(self, query: "Query", params: dict[str, Any], *, fresh: bool = False) -> Rows:
        """The rows of one SELECT (platform/queries.py), from where `read` reads, without a
        session: on SQLite from the driver itself, on PostgreSQL on a pooled connection's
        driver outside any transaction (platform/pg_reads.py)."""
        return (await self._rows(query, params, fresh))[0]

    async def rows_by_id(self, query: "Query", params: dict[str, Any]) -> Rows:
        """`rows` of something the caller names by id: as `read_by_id`, the primary is asked
        before answering with none when a replica had none."""
        found, on_replica = await self._rows(query, params, fresh=False)
        if found or not on_replica:
            return found
        return await self.rows(query, params, fresh=True)

    async def _rows(self, query: "Query", params: dict[str, Any], fresh: bool) -> tuple[Rows, bool]:
        """The rows, and whether a replica served them."""
        if self.inline_reader is not None:  # the file itself: nothing newer to ask
            self._inline_statements()
            return self.inline_reader.rows(query, params), False
        if self._driver is not None:
            return await self._driver.rows(query, params, fresh=fresh)
        async with self.read(fresh=fresh) as session:
            found = [tuple(row) for row in await session.execute(query.statement, params)]
            return found, bool(session.info.get("on_replica"))

    async def _read_session(self, fresh: bool) -> ReadSession:
        session = await self.admitted_replica(fresh)
        return session if session is not None else await self._primary_read()

    async def admitted_replica(self, fresh: bool) -> ReplicaSession | None:
        """The session of a replica that may serve a read, begun only if admitting it took a
        question; None when the primary must serve it. Each read is counted where it goes."""
        replicas = self.replicas
        if replicas is None:
            return None
        if fresh:
            replicas.count_read("primary", "fresh")
            return None
        required = await replicas.required_position()
        reason = "none_in_bounds" if required != UNKNOWN else "own_write_unknown"
        for replica in replicas.candidates() if required != UNKNOWN else ():
            session = ReplicaSession(replicas, replica, fallback=self._primary_read)
            refusal = await replicas.admit(session, replica, required)
            if refusal is None:
                replicas.count_read("replica", "in_bounds")
                return session
            reason = refusal
        replicas.count_read("primary", reason)
        return None

    async def _primary_read(self) -> ReadSession:
        return await _begun(self._reader())

    async def ping(self) -> None:
        """One round trip to the primary; raises what stopped it. On PostgreSQL through the
        probe, a connection of its own (a pool busy serving is not a broken server); on SQLite
        a fresh read."""
        if self.probe is not None:
            await self.probe.value("SELECT 1")
            return
        async with self.read(fresh=True) as session:
            await session.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        if self.inline_reader is not None:
            self.inline_reader.close()
        if self.probe is not None:
            await self.probe.close()
        await self.primary.dispose()
        if self.reader is not None:
            await self.reader.dispose()
        if self.replicas is not None:
            await self.replicas.dispose()


async def _begun(session: ReadSession) -> ReadSession:
    await session.connection()  # checks a connection out and begins, within the pool's bound
    return session
