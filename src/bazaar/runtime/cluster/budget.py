"""The connection budget of `bazaar up`: each process's pool sized so that all processes
together stay under the PostgreSQL server's `max_connections`.

A process opens one pool per database it uses (its service's database; orders one per shard
database), each holding up to `size + overflow` connections. Every database lives on the
primary, so the primary carries the sum; each replica carries at most the same sum (the
same pools, read side) under the same `max_connections`, which a hot standby must keep at least
as high as its primary's.

Behind PgBouncer (`bazaar up --pgbouncer`) the servers see PgBouncer's server pools only:
those are sized to stay under `max_connections`, one per database on the server, while each
process keeps the full client pools of its kind (PgBouncer multiplexes them).
"""

import math
from dataclasses import dataclass

from bazaar.runtime.cluster.topology import Process, TopologyError
from bazaar.runtime.services import SERVICE_DATABASES

RESERVED = 3
"""PostgreSQL's `superuser_reserved_connections` default."""
TOOLS = 10
"""Kept free for `bazaar migrate`, `status`, `admin create`, `seed` and a psql session."""
KIND_CAPACITY = {"serve": 20, "worker": 10}
"""A process never gets more than it asks for unbounded (`bazaar serve`'s and `bazaar worker`'s
own defaults: 10 + 10 and 5 + 5)."""
KIND_CONCURRENCY = {"serve": 4, "worker": 8}
"""Event handlers at once per kind of process, by default; kept below the pool's capacity."""


@dataclass(frozen=True)
class Pool:
    size: int
    overflow: int
    consumer_concurrency: int

    @property
    def capacity(self) -> int:
        return self.size + self.overflow

    def environment(self) -> dict[str, str]:
        return {
            "BAZAAR_DB_POOL_SIZE": str(self.size),
            "BAZAAR_DB_MAX_OVERFLOW": str(self.overflow),
            "BAZAAR_CONSUMER_CONCURRENCY": str(self.consumer_concurrency),
        }


@dataclass(frozen=True)
class ServerPools:
    """PgBouncer's connections for one PostgreSQL server."""

    per_database: int
    """Server connections per database (`default_pool_size`, `max_db_connections`)."""
    limit: int
    """Server connections for all databases together (`max_user_connections`: the processes
    log in as one user), a cap even for a database nobody planned (e.g. `postgres`)."""
    clients: int
    """Client connections it accepts (`max_client_conn`): every process's pools and the tools."""


@dataclass(frozen=True)
class Budget:
    pools: dict[str, Pool]
    """By process name."""
    max_connections: int
    total: int
    """The most connections all processes together may open on one server."""
    server: ServerPools | None = None
    """PgBouncer's side, when PgBouncer stands in front of each server."""


def _pool(kind: str, capacity: int) -> Pool:
    size = math.ceil(capacity / 2)
    return Pool(
        size=size,
        overflow=capacity - size,
        consumer_concurrency=min(KIND_CONCURRENCY[kind], capacity - 1),
    )


def databases_of(service: str, shards: int) -> int:
    return shards if service == "orders" else 1


def plan_budget(processes: list[Process], shards: int, max_connections: int) -> Budget:
    """One capacity per database pool for every process, the largest that keeps the sum
    under `max_connections` less what PostgreSQL reserves and what the tools need."""
    available = max_connections - RESERVED - TOOLS
    pool_count = sum(databases_of(p.service, shards) for p in processes)
    share = available // pool_count if pool_count else 0
    if share < 2:
        raise TopologyError(
            f"{len(processes)} processes need {pool_count} connection pools of at least 2"
            f" connections, but max_connections = {max_connections} leaves {available}:"
            " run fewer instances or raise max_connections"
        )
    pools = {p.name: _pool(p.kind, min(share, KIND_CAPACITY[p.kind])) for p in processes}
    total = sum(pools[p.name].capacity * databases_of(p.service, shards) for p in processes)
    return Budget(pools=pools, max_connections=max_connections, total=total)


def plan_pooled_budget(processes: list[Process], shards: int, max_connections: int) -> Budget:
    """The budget behind PgBouncer: its server pools share what `max_connections` leaves
    (every database on the server gets an equal part); each process keeps its kind's full
    client pools, which PgBouncer accepts all of."""
    available = max_connections - RESERVED - TOOLS
    databases = len(SERVICE_DATABASES) + shards
    per_database = available // databases
    if per_database < 2:
        raise TopologyError(
            f"{databases} databases need at least 2 server connections each, but"
            f" max_connections = {max_connections} leaves {available}: raise max_connections"
        )
    pools = {p.name: _pool(p.kind, KIND_CAPACITY[p.kind]) for p in processes}
    clients = sum(pools[p.name].capacity * databases_of(p.service, shards) for p in processes)
    server = ServerPools(per_database=per_database, limit=available, clients=clients + TOOLS * 5)
    return Budget(
        pools=pools,
        max_connections=max_connections,
        total=per_database * databases,
        server=server,
    )
