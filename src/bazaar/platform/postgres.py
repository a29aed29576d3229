"""PostgreSQL: asyncpg engines with bounded pools, one database per service derived from one
URL, and the creation of databases that do not exist yet."""

import contextlib
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bazaar.platform.db import Database
from bazaar.platform.pg_urls import driver_dsn
from bazaar.platform.probe import Probe
from bazaar.platform.replicas import LocalWritePositions, Replica, ReplicaSet, WritePositions

_SAFE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
DEFAULT_DATABASE = "bazaar"
LOCK_TIMEOUT = 2.0
"""Seconds a statement may wait for a lock before it fails (SQLSTATE 55P03)."""


def service_url(base: str, suffix: str) -> str:
    """The URL of a service's own database: `.../bazaar` gives `.../bazaar_<suffix>`."""
    url = make_url(base)
    name = f"{url.database or DEFAULT_DATABASE}_{suffix}"
    return url.set(database=name).render_as_string(hide_password=False)


@dataclass(frozen=True)
class PoolSettings:
    """One engine's connection pool: at most `size + overflow` connections, and how long a
    caller waits for one before it fails (a request then answers 503).

    Every connection the pool opens is kept (`postgres_engine`): SQLAlchemy closes an
    overflow connection as soon as it is returned, so under load each request past `size`
    opened a new one (a TCP handshake, authentication, and with TLS a handshake more) on its
    own path. The budget of `bazaar up` counts both parts already."""

    size: int = 5
    overflow: int = 5
    timeout: float = 1.0

    @property
    def capacity(self) -> int:
        return self.size + self.overflow


def lock_timeout_setting() -> str:
    """`LOCK_TIMEOUT` as PostgreSQL's `lock_timeout` value (milliseconds)."""
    return str(int(LOCK_TIMEOUT * 1000))


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4().hex}__"


def connect_args(pooler: str | None, command_timeout: float) -> dict[str, Any]:
    """asyncpg's arguments for a connection to the server itself, or (`pooler` "pgbouncer")
    to a PgBouncer in transaction pooling.

    Through PgBouncer each transaction may run on another server connection, and PgBouncer
    1.18 does not carry prepared statements along: asyncpg's and SQLAlchemy's statement
    caches are off and every statement SQLAlchemy prepares gets a name of its own, so none
    collides with one another client left on that server connection (SQLAlchemy's asyncpg
    dialect documents this). PgBouncer refuses startup parameters it does not know, so
    `lock_timeout` is not sent: PgBouncer sets it on each server connection instead
    (`connect_query`, see runtime/cluster/pgbouncer.py).
    """
    args: dict[str, Any] = {"timeout": 5, "command_timeout": command_timeout}
    if pooler == "pgbouncer":
        return args | {
            "statement_cache_size": 0,
            "prepared_statement_cache_size": 0,
            "prepared_statement_name_func": _unique_statement_name,
        }
    # a wait for a row lock ends too: the request answers 503, a handler retries
    return args | {"server_settings": {"lock_timeout": lock_timeout_setting()}}


_ADAPTER_ARGS = ("prepared_statement_cache_size", "prepared_statement_name_func")
"""Of `connect_args`, those SQLAlchemy's adaptation of asyncpg takes (the rest are asyncpg's)."""


def postgres_engine(
    url: str,
    pool: PoolSettings | None = None,
    *,
    command_timeout: float = 30,
    pooler: str | None = None,
) -> AsyncEngine:
    """An engine whose every wait is bounded: past capacity a caller fails fast (503).

    Its connections are opened from the URL whole, as libpq reads it (`driver_dsn`), so that
    `sslmode=verify-full&sslrootcert=...` and the URL's other options reach asyncpg, which
    SQLAlchemy's own translation of a URL into arguments would refuse.
    """
    pool = pool or PoolSettings()
    dsn = driver_dsn(url)
    arguments = connect_args(pooler, command_timeout)
    adapter = {name: arguments.pop(name) for name in _ADAPTER_ARGS if name in arguments}
    engine: AsyncEngine

    def connect() -> Any:
        return engine.sync_engine.dialect.dbapi.connect(  # type: ignore[union-attr]
            async_creator_fn=lambda: asyncpg.connect(dsn, **arguments), **adapter
        )

    engine = create_async_engine(
        make_url(url).set(drivername="postgresql+asyncpg"),
        pool_size=pool.capacity,
        max_overflow=0,
        pool_timeout=pool.timeout,
        pool_recycle=1800,
        creator=connect,
    )
    return engine


def server_probe(url: str, *, timeout: float, pooler: str | None = None) -> Probe:
    """A probe (platform/probe.py) of the server and database `url` names, connected as the
    engines' connections are."""
    dsn = driver_dsn(url)
    arguments = connect_args(pooler, command_timeout=timeout)
    for name in _ADAPTER_ARGS:  # SQLAlchemy's, not asyncpg's
        arguments.pop(name, None)
    return Probe(lambda: asyncpg.connect(dsn, **arguments), timeout)


def postgres_database(
    name: str,
    url: str,
    pool: PoolSettings | None = None,
    replica_urls: Sequence[str] = (),
    *,
    max_lag: float = 0.5,
    positions: WritePositions | None = None,
    pooler: str | None = None,
) -> Database:
    """A database on its primary, reading from `replica_urls` (the same database on each
    streaming replica) when there are any; `pooler` says what the URLs name (`connect_args`)."""
    primary = postgres_engine(url, pool, pooler=pooler)
    can_listen = pooler != "pgbouncer"  # transaction pooling hands LISTEN's connection on
    # the monitor's and readiness's questions to the primary: within readiness's own bound
    probe = server_probe(url, timeout=ReplicaSet.check_timeout * 2, pooler=pooler)
    if not replica_urls:
        return Database(name=name, primary=primary, can_listen=can_listen, probe=probe)
    replicas = [
        Replica(
            name=server_of(replica),
            engine=postgres_engine(replica, pool, command_timeout=5, pooler=pooler),
            probe=server_probe(replica, timeout=ReplicaSet.check_timeout, pooler=pooler),
        )
        for replica in replica_urls
    ]
    replica_set = ReplicaSet(
        database=name,
        primary=primary,
        primary_probe=probe,
        replicas=replicas,
        positions=positions or LocalWritePositions(),
        max_lag=max_lag,
    )
    return Database(
        name=name, primary=primary, replicas=replica_set, can_listen=can_listen, probe=probe
    )


def replica_url(replica_server: str, database_url: str) -> str:
    """The URL of `database_url`'s database on a replica server."""
    name = make_url(database_url).database
    return make_url(replica_server).set(database=name).render_as_string(hide_password=False)


def server_of(url: str | URL) -> str:
    """`host:port` of the server a URL names: databases on one server share its replicas."""
    parts = make_url(url)
    return f"{parts.host or 'localhost'}:{parts.port or 5432}"


def database_name(url: URL) -> str:
    name = url.database or DEFAULT_DATABASE
    if not _SAFE_NAME.match(name):
        raise ValueError(f"database name {name!r}: use letters, digits and underscores")
    return name


async def maintenance_connection(url: str | URL) -> asyncpg.Connection:
    """A connection to the `postgres` database of the server `url` names (creating and
    dropping databases, asking the server itself)."""
    return await asyncpg.connect(
        driver_dsn(url, database="postgres"),
        timeout=5,
        # no statement kept on the server: also right through a PgBouncer in transaction mode
        statement_cache_size=0,
    )


async def server_problem(url: str | URL) -> str | None:
    """Why the server of `url` cannot be reached (within 5 s), or None when it answers."""
    parts = make_url(url) if isinstance(url, str) else url
    try:
        connection = await maintenance_connection(parts)
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        return (
            f"{parts.host}:{parts.port or 5432} does not answer ({type(error).__name__}: {error})"
        )
    await connection.close()
    return None


async def ensure_database(url: URL) -> None:
    """Create the database `url` names unless it exists; safe to run from two processes."""
    name = database_name(url)
    connection = await maintenance_connection(url)
    try:
        if await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return
        # another process may create it meanwhile
        with contextlib.suppress(asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
            await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


async def drop_database(url: URL) -> None:
    """Drop the database `url` names, disconnecting its sessions (tests clean up with it)."""
    connection = await maintenance_connection(url)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{database_name(url)}" WITH (FORCE)')
    finally:
        await connection.close()
