"""Streaming replicas: which one may serve a read, and read-your-writes for each customer.

A read that may be slightly stale goes to a replica when one is healthy, lags less than a
bound and, if the caller wrote recently, has replayed the caller's last commit: after each
commit the primary's WAL position (`pg_current_wal_lsn()`) is remembered under the caller's
consistency key (their user id), and a replica serves that caller only once its
`pg_last_wal_replay_lsn()` has passed it. Otherwise the primary serves. Every read also waits
for the replica to pass this process's own last commit, so a process never reads older data
than it wrote (`bazaar dev` then behaves as if it had no replica, only faster).

Two checks keep a paused or dead replica from hanging a request: a monitor polls every replica
(lag, health) in the background, and each replica session starts with a bounded query of the
replica's replay position, which is also the exact read-your-writes test. A replica that does
not answer in time is skipped until the monitor sees it answer again.
"""

import asyncio
import contextlib
import itertools
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import asyncpg
from prometheus_client import Counter, Gauge
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from bazaar.platform.cache import RedisCache
from bazaar.platform.loops import Waker
from bazaar.platform.observability import log
from bazaar.platform.probe import Probe


@dataclass
class _Caller:
    user_id: str | None = None


_caller: ContextVar[_Caller | None] = ContextVar("consistency_caller", default=None)


def start_request() -> None:
    """A request begins: nobody's writes to follow yet.

    The caller is a mutable cell set here, in the request's own context, because a web
    framework may resolve the caller in a child task whose context changes are lost.
    """
    _caller.set(_Caller())


def reads_follow_writes_of(user_id: str) -> None:
    """This request acts for `user_id`: its commits count as theirs, and its reads (and their
    next requests' reads) see every write of theirs."""
    caller = _caller.get()
    if caller is None:
        _caller.set(_Caller(user_id))
    else:
        caller.user_id = user_id


def consistency_key() -> str | None:
    """Whose writes the current reads must see; None for anonymous work and for workers."""
    caller = _caller.get()
    return None if caller is None else caller.user_id


REPLICA_LAG = Gauge(
    "bazaar_replica_lag_seconds",
    "How far a replica's replay is behind its primary (0 when it has replayed everything).",
    ["database", "replica"],
)
REPLICA_LAG_BYTES = Gauge(
    "bazaar_replica_lag_bytes",
    "WAL bytes written on the primary that a replica has not replayed yet.",
    ["database", "replica"],
)
REPLICA_UP = Gauge(
    "bazaar_replica_up", "1 while a replica answers its monitor.", ["database", "replica"]
)
READS = Counter(
    "bazaar_db_reads_total",
    "Read transactions by where they ran (replica or primary) and why. The share served by "
    'replicas is sum(rate(...{target="replica"})) / sum(rate(...)).',
    ["database", "target", "reason"],
)


UNKNOWN = -1
"""A write position that cannot be told: only the primary may serve."""


_HIGH_WATER = "SELECT pg_current_wal_insert_lsn()::text"
"""Where the primary's WAL ends: the insert position, not the write position; with
asynchronous commit the commit record may still sit in WAL buffers, past what is written."""

T = TypeVar("T")


async def _finish_then(
    task: asyncio.Future[Any], cleanup: Callable[[], Awaitable[None]] | None
) -> None:
    with contextlib.suppress(BaseException):
        await task
    if cleanup is not None:
        with contextlib.suppress(Exception):
            await cleanup()


def parse_lsn(lsn: str) -> int:
    """A PostgreSQL WAL position ('16/B374D848') as a number that orders like the position."""
    high, _, low = lsn.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


class WritePositions(Protocol):
    """Where each consistency key's last commit ended, per database."""

    async def remember(self, database: str, key: str, lsn: int) -> None: ...

    async def recall(self, database: str, key: str) -> int | None: ...


class LocalWritePositions:
    """Positions kept in this process: enough when one process serves a customer."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._positions: OrderedDict[tuple[str, str], int] = OrderedDict()

    async def remember(self, database: str, key: str, lsn: int) -> None:
        self._positions[(database, key)] = lsn
        self._positions.move_to_end((database, key))
        while len(self._positions) > self.capacity:
            self._positions.popitem(last=False)

    async def recall(self, database: str, key: str) -> int | None:
        return self._positions.get((database, key))


class SharedWritePositions:
    """Positions shared through Redis, so that any instance honours a customer's writes.

    While Redis is unavailable (its circuit breaker open), `recall` answers "unknown" and the
    caller's reads go to the primary: correct, only slower. So does a value that is not a
    position (one another version of Bazaar wrote). Every read of a signed-in caller asks, so
    the value is plain text on redis-py's own client (`RedisCache.get_text`), not a cashews
    entry.
    """

    TTL_SECONDS = 60

    def __init__(self, cache: RedisCache) -> None:
        self.cache = cache
        self.local = LocalWritePositions()

    async def remember(self, database: str, key: str, lsn: int) -> None:
        await self.local.remember(database, key, lsn)
        await self.cache.set_text(f"lsn:{database}:{key}", str(lsn), self.TTL_SECONDS)

    async def recall(self, database: str, key: str) -> int | None:
        shared = await self.cache.get_text(f"lsn:{database}:{key}")
        if self.cache.breaker.is_open:
            return UNKNOWN
        local = await self.local.recall(database, key)
        if shared is None:
            return local
        if not shared.isdigit():
            return UNKNOWN
        return max(int(shared), local or 0)


@dataclass
class Replica:
    name: str
    engine: AsyncEngine
    probe: Probe
    """The monitor's own connection (platform/probe.py)."""
    replayed: int = 0
    lag_seconds: float = 0.0
    answering: bool = True


@dataclass
class ReplicaSet:
    """The replicas of one database and the rules for sending a read to one of them."""

    database: str
    primary: AsyncEngine
    primary_probe: Probe
    replicas: Sequence[Replica]
    positions: WritePositions = field(default_factory=LocalWritePositions)
    max_lag: float = 0.5
    """Seconds of replay lag past which a replica is skipped."""
    check_timeout: float = 1.0
    """Seconds a replica may take to say where its replay is, before it is skipped: generous,
    since under load the wait includes this process's own event loop."""
    monitor_interval: float = 0.2

    def __post_init__(self) -> None:
        self._turn = itertools.cycle(range(len(self.replicas)))
        # (when, primary's WAL position) of recent polls, oldest first: enough to date a lag
        # of several bounds
        self._history: deque[tuple[float, int]] = deque(maxlen=200)
        self._abandoned: set[asyncio.Task[None]] = set()
        self.high_water = 0
        """Where this process's last commit ended: its own reads never go back before it."""
        self._high_water_behind = False
        """A commit of nobody's (a consumer's, an anonymous request's) has ended since
        `high_water` was learnt: the next read asks the primary where its WAL ends."""

    def candidates(self) -> list[Replica]:
        """Replicas that may serve now, the next one in turn first."""
        start = next(self._turn)
        ordered = [*self.replicas[start:], *self.replicas[:start]]
        return [r for r in ordered if r.answering and r.lag_seconds <= self.max_lag]

    async def required_position(self) -> int | None:
        """How far a replica must have replayed to serve this read: past every commit this
        process made, and past the caller's last commit made anywhere; UNKNOWN when the
        caller's cannot be told (then only the primary is sure to have it)."""
        key = consistency_key()
        callers = None if key is None else await self.positions.recall(self.database, key)
        if callers == UNKNOWN:
            return UNKNOWN
        if self._high_water_behind:
            await self._catch_up_high_water()
        return max(callers or 0, self.high_water) or None

    async def _catch_up_high_water(self) -> None:
        """Learn where the primary's WAL ends now, past every commit of this process. While
        the primary cannot say (within the bound), the last position learnt serves: reads
        then go on on the replicas, which have all the primary could send them."""
        self._high_water_behind = False  # first: a commit ending meanwhile is asked for again

        async def ask() -> None:
            async with self.primary.connect() as connection:
                await self._learn_high_water(connection)

        try:
            await self.within_bound(ask())
        except Exception as error:
            self._high_water_behind = True
            log.warning("replica_high_water_unknown", database=self.database, error=repr(error))

    async def remember_commit(self, connection: AsyncConnection) -> None:
        """After a commit: remember where the WAL ends, for this process and for the caller.

        A commit of nobody's is only noted: the next read of this process learns a position
        past it then (one question for any number of commits, and none at all in a worker,
        which seldom reads on a replica). A caller's position is learnt at once, since their
        next request may come to another instance."""
        key = consistency_key()
        if key is None:
            self.note_own_commit()
            return
        position = await self._learn_high_water(connection)
        await self.positions.remember(self.database, key, position)

    def note_own_commit(self) -> None:
        """This process committed on the primary (through `Database.write`, or around it: a
        migration): its next read learns where the WAL ends, so no replica that has not
        replayed the commit serves it (a table a migration just made is there to read)."""
        self._high_water_behind = True

    async def _learn_high_water(self, connection: AsyncConnection) -> int:
        # On the driver, outside a transaction: one round trip, where the connection's own
        # execute would begin a transaction first and roll it back when given back (three).
        raw = await connection.get_raw_connection()
        try:
            answer = await raw.driver_connection.fetchval(_HIGH_WATER)  # type: ignore[union-attr]
        except asyncpg.PostgresError as error:  # as SQLAlchemy raises it: is_transient knows it
            raise DBAPIError(_HIGH_WATER, (), error) from error
        position = parse_lsn(answer)
        self.high_water = max(self.high_water, position)
        return position

    async def admit(self, session: AsyncSession, replica: Replica, lsn: int | None) -> str | None:
        """Begin `session` on `replica` and tell whether it may serve: None when it may, else
        why not. A session that may not serve is closed here.

        The replica must say within `check_timeout` how far it has replayed; one that does not
        is marked down (the monitor brings it back). The timed-out work is left to finish in
        the background: cancelling asyncpg mid-query waits for the server to acknowledge the
        cancel, which a frozen server never does.
        """
        if replica.replayed >= (lsn or 0):
            # Known to have replayed the caller's writes (by the monitor or an earlier
            # admission): no question to ask, and the session's statements are bounded
            # themselves (ReplicaSession), so a replica frozen since still cannot hang it.
            return None
        query = text("SELECT pg_last_wal_replay_lsn()::text")
        connected = False

        async def replayed_position() -> str | None:
            nonlocal connected
            connection = await session.connection()
            connected = True
            return (await connection.execute(query)).scalar()

        try:
            replayed = await self.within_bound(replayed_position(), cleanup=session.invalidate)
        except PoolTimeout:
            await session.close()
            return "replica_busy"
        except (TimeoutError, OSError, DBAPIError) as error:
            if not connected and isinstance(error, TimeoutError):
                return "replica_busy"  # still queued for one of its pooled connections
            self.mark_down(replica, error)
            return "replica_down"
        if replayed is not None:  # None: not in recovery, a promoted replica has everything
            replica.replayed = max(replica.replayed, parse_lsn(replayed))
            if replica.replayed < (lsn or 0):
                await session.close()
                return "behind_own_write"
        return None

    async def within_bound(
        self, work: Coroutine[Any, Any, T], cleanup: Callable[[], Awaitable[None]] | None = None
    ) -> T:
        """`work`'s result, or TimeoutError after `check_timeout` while `work` (then `cleanup`)
        goes on in the background; `cleanup` also runs when `work` fails."""
        task = asyncio.ensure_future(work)
        done, _ = await asyncio.wait({task}, timeout=self.check_timeout)
        if done:
            if task.exception() is not None and cleanup is not None:
                await cleanup()
            return task.result()
        abandoned = asyncio.ensure_future(_finish_then(task, cleanup))
        self._abandoned.add(abandoned)
        abandoned.add_done_callback(self._abandoned.discard)
        raise TimeoutError(f"no answer within {self.check_timeout} s")

    def mark_down(self, replica: Replica, error: BaseException) -> None:
        if replica.answering:
            log.warning(
                "replica_skipped",
                database=self.database,
                replica=replica.name,
                error=type(error).__name__,
            )
        replica.answering = False
        REPLICA_UP.labels(self.database, replica.name).set(0)

    def count_read(self, target: str, reason: str) -> None:
        READS.labels(self.database, target, reason).inc()

    async def monitor(self) -> None:
        """Poll every replica's lag until cancelled."""
        waker = Waker(self.monitor_interval)
        while True:
            await self.check_all()
            await waker.wait()

    async def check_all(self) -> None:
        try:
            written = parse_lsn(await self.primary_probe.value("SELECT pg_current_wal_lsn()::text"))
        except Exception as error:  # the primary's own outage shows in /readyz
            log.warning("replica_monitor_primary_failed", error=type(error).__name__)
            return
        self._history.append((time.monotonic(), written))
        await asyncio.gather(*(self._check(replica, written) for replica in self.replicas))

    def lag_of(self, replayed: int) -> float:
        """Seconds since the primary had written WAL that the replica has not replayed: the
        age of the oldest poll that saw the primary past `replayed` (0 when caught up).

        `pg_last_xact_replay_timestamp()` would mislead after an idle spell: it dates the
        last replayed transaction, however recent the gap is.
        """
        now = time.monotonic()
        for seen_at, written in self._history:
            if written > replayed:
                return now - seen_at
        return 0.0

    async def _check(self, replica: Replica, written: int) -> None:
        try:  # bounded by the probe's timeout, `check_timeout`
            replayed_text = await replica.probe.value("SELECT pg_last_wal_replay_lsn()::text")
        except Exception as error:
            self.mark_down(replica, error)
            return
        replayed = parse_lsn(replayed_text) if replayed_text is not None else written
        replica.replayed = max(replica.replayed, replayed)
        replica.lag_seconds = self.lag_of(replica.replayed)
        if not replica.answering:
            log.info("replica_back", database=self.database, replica=replica.name)
        replica.answering = True
        REPLICA_UP.labels(self.database, replica.name).set(1)
        REPLICA_LAG.labels(self.database, replica.name).set(replica.lag_seconds)
        REPLICA_LAG_BYTES.labels(self.database, replica.name).set(max(0, written - replayed))

    async def dispose(self) -> None:
        for replica in self.replicas:
            await replica.probe.close()
            await replica.engine.dispose()
