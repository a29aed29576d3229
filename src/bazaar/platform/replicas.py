"""Streaming replicas: which one may serve a read, and read-your-writes for each customer.

A read that may be slightly stale goes to a replica when one is healthy, lags less than a
bound and, if the caller wrote recently, has replayed the caller's last commit: after each
commit the primary's WAL position (`pg_current_wal_lsn()`) is remembered under the caller's
consistency key (their user id), and a replica serves that caller only once its
`pg_last_wal_replay_lsn()` has passed it. Otherwise the primary serves.

Two checks keep a paused or dead replica from hanging a request: a monitor polls every replica
(lag, health) in the background, and each replica session starts with a bounded query of the
replica's replay position, which is also the exact read-your-writes test. A replica that does
not answer in time is skipped until the monitor sees it answer again.
"""

import asyncio
import itertools
import time
from collections import OrderedDict
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import Counter, Gauge
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bazaar.platform.cache import RedisCache
from bazaar.platform.loops import Waker
from bazaar.platform.observability import log

consistency_key: ContextVar[str | None] = ContextVar("consistency_key", default=None)
"""Whose writes the current reads must see (the signed-in user); None for anonymous work."""

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
    caller's reads go to the primary: correct, only slower.
    """

    TTL_SECONDS = 60

    def __init__(self, cache: RedisCache) -> None:
        self.cache = cache
        self.local = LocalWritePositions()

    async def remember(self, database: str, key: str, lsn: int) -> None:
        await self.local.remember(database, key, lsn)
        await self.cache.set(f"lsn:{database}:{key}", lsn, expire=self.TTL_SECONDS)

    async def recall(self, database: str, key: str) -> int | None:
        shared = await self.cache.get(f"lsn:{database}:{key}")
        if self.cache.breaker.is_open:
            return UNKNOWN
        local = await self.local.recall(database, key)
        return max((p for p in (shared, local) if p is not None), default=None)


@dataclass
class Replica:
    name: str
    engine: AsyncEngine
    replayed: int = 0
    lag_seconds: float = 0.0
    answering: bool = True
    checked_at: float = 0.0


@dataclass
class ReplicaSet:
    """The replicas of one database and the rules for sending a read to one of them."""

    database: str
    primary: AsyncEngine
    replicas: Sequence[Replica]
    positions: WritePositions = field(default_factory=LocalWritePositions)
    max_lag: float = 0.5
    """Seconds of replay lag past which a replica is skipped."""
    check_timeout: float = 0.25
    """Seconds a replica may take to say where its replay is, before it is skipped."""
    monitor_interval: float = 0.2

    def __post_init__(self) -> None:
        self._turn = itertools.cycle(range(len(self.replicas)))

    def candidates(self) -> list[Replica]:
        """Replicas that may serve now, the next one in turn first."""
        start = next(self._turn)
        ordered = [*self.replicas[start:], *self.replicas[:start]]
        return [r for r in ordered if r.answering and r.lag_seconds <= self.max_lag]

    async def required_position(self) -> int | None:
        """Where the caller's last commit ended: None when they wrote nothing lately, and
        UNKNOWN when that cannot be told (then only the primary is sure to have it)."""
        key = consistency_key.get()
        return None if key is None else await self.positions.recall(self.database, key)

    async def remember_commit(self, connection: AsyncConnection) -> None:
        """After a commit: remember where the WAL ends for the caller, if there is one."""
        key = consistency_key.get()
        if key is None:
            return
        position = (await connection.execute(text("SELECT pg_current_wal_lsn()::text"))).scalar()
        await self.positions.remember(self.database, key, parse_lsn(position))

    async def has_replayed(self, connection: AsyncConnection, replica: Replica, lsn: int) -> bool:
        """True when `replica` has replayed through `lsn`; a replica that does not answer within
        `check_timeout` is marked down (the monitor brings it back)."""
        try:
            async with asyncio.timeout(self.check_timeout):
                result = await connection.execute(text("SELECT pg_last_wal_replay_lsn()::text"))
                replayed = result.scalar()
        except (TimeoutError, OSError) as error:
            self.mark_down(replica, error)
            raise
        if replayed is None:  # not in recovery: a promoted former replica has everything
            return True
        replica.replayed = max(replica.replayed, parse_lsn(replayed))
        return replica.replayed >= lsn

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
            async with asyncio.timeout(self.check_timeout * 4), self.primary.connect() as primary:
                written = parse_lsn(
                    (await primary.execute(text("SELECT pg_current_wal_lsn()::text"))).scalar()
                )
        except Exception as error:  # the primary's own outage shows in /readyz
            log.warning("replica_monitor_primary_failed", error=type(error).__name__)
            return
        await asyncio.gather(*(self._check(replica, written) for replica in self.replicas))

    async def _check(self, replica: Replica, written: int) -> None:
        query = text(
            "SELECT pg_last_wal_replay_lsn()::text,"
            " extract(epoch FROM now() - pg_last_xact_replay_timestamp())"
        )
        try:
            async with asyncio.timeout(self.check_timeout), replica.engine.connect() as connection:
                replayed_text, since_last_replay = (await connection.execute(query)).one()
        except Exception as error:
            self.mark_down(replica, error)
            return
        replayed = parse_lsn(replayed_text) if replayed_text is not None else written
        replica.replayed = max(replica.replayed, replayed)
        behind = max(0, written - replica.replayed)
        # Caught up means no lag, however long ago the last transaction was replayed.
        replica.lag_seconds = 0.0 if behind == 0 else float(since_last_replay or 0.0)
        replica.checked_at = time.monotonic()
        if not replica.answering:
            log.info("replica_back", database=self.database, replica=replica.name)
        replica.answering = True
        REPLICA_UP.labels(self.database, replica.name).set(1)
        REPLICA_LAG.labels(self.database, replica.name).set(replica.lag_seconds)
        REPLICA_LAG_BYTES.labels(self.database, replica.name).set(behind)

    async def dispose(self) -> None:
        for replica in self.replicas:
            await replica.engine.dispose()
