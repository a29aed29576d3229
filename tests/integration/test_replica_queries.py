"""A `Query` on PostgreSQL with a streaming replica (platform/pg_reads.py): it reads on the
server a read session would (the replica in bounds, the primary for a fresh read, for the
caller's own writes the replica has not replayed, and for an id the replica does not know yet),
and a replica that freezes under it costs the read at most the replica set's bound.

The pair is tests/replication.py's; pausing the replica's replay makes it answer with old data.
"""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, func, literal, select
from sqlalchemy.engine import make_url

from bazaar.platform.db import Database, Timestamp
from bazaar.platform.postgres import (
    PoolSettings,
    drop_database,
    ensure_database,
    postgres_database,
    replica_url,
)
from bazaar.platform.queries import Query
from bazaar.platform.replicas import reads_follow_writes_of, start_request
from tests.e2e.checkout import eventually
from tests.integration.test_replicas import caught_up
from tests.replication import ReplicatedServer

DATABASE = "replica_queries"
metadata = MetaData()
notes = Table(
    "replica_note",
    metadata,
    Column("id", String(10), primary_key=True),
    Column("made_at", Timestamp()),
    Column("weight", Integer),
)
ALL = Query(select(notes.c.id, notes.c.made_at, notes.c.weight).order_by(notes.c.id))
ONE = Query(select(notes.c.id).where(notes.c.id == bindparam("id")))
MADE = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
SLOW = Query(select(literal(7)).select_from(func.pg_sleep(0.3)))


def counted(target: str, reason: str) -> float:
    labels = {"database": DATABASE, "target": target, "reason": reason}
    return REGISTRY.get_sample_value("bazaar_db_reads_total", labels) or 0.0


def statements() -> float:
    labels = {"database": DATABASE}
    return REGISTRY.get_sample_value("bazaar_db_statements_total", labels) or 0.0


@pytest.fixture
async def db(replicated_postgres: ReplicatedServer) -> AsyncIterator[Database]:
    url = replicated_postgres.primary.url(f"bazaar_test_{uuid.uuid4().hex[:12]}")
    await ensure_database(make_url(url))
    replica = replica_url(replicated_postgres.replica.url(), url)
    pool = PoolSettings(size=2, overflow=0, timeout=0.3)
    database = postgres_database(DATABASE, url, pool, replica_urls=[replica])
    try:
        async with database.primary.begin() as connection:
            await connection.run_sync(metadata.create_all)
        async with database.write() as session:
            await session.execute(notes.insert(), {"id": "a", "made_at": MADE, "weight": 1})
        await caught_up(replicated_postgres)
        await served_by_the_replica(database)  # from now on known to have replayed all of it
        yield database
    finally:
        replicated_postgres.resume()
        await database.dispose()
        await drop_database(make_url(url))


async def served_by_the_replica(db: Database) -> list[str]:
    """The ids of `ALL`, once a replica serves them (the test servers commit asynchronously: a
    commit may reach the replica a moment after the primary's WAL says it ended)."""

    async def on_replica() -> list[str] | None:
        before = counted("replica", "in_bounds")
        rows = await db.rows(ALL, {})
        return [row[0] for row in rows] if counted("replica", "in_bounds") > before else None

    # up to 30 s: after the suite's earlier writes the replica may still be replaying (CI once
    # waited past 5 s), as in test_replicas
    return await eventually(on_replica, within=30)


async def write_elsewhere(server: ReplicatedServer, db: Database, note_id: str) -> None:
    """A commit of another process's: this one learns nothing of it."""
    connection = await asyncpg.connect(server.primary.url(db.primary.url.database or ""))
    try:
        await connection.execute(
            "INSERT INTO replica_note (id, made_at, weight) VALUES ($1, now(), 2)", note_id
        )
    finally:
        await connection.close()


async def test_a_replica_in_bounds_serves_on_its_driver_and_a_fresh_read_the_primary(
    db: Database, replicated_postgres: ReplicatedServer
) -> None:
    replicated_postgres.pause_replay()
    await write_elsewhere(replicated_postgres, db, "b")
    on_replica, sent = counted("replica", "in_bounds"), statements()

    stale = await db.rows(ALL, {})

    assert [row[0] for row in stale] == ["a"]
    assert counted("replica", "in_bounds") == on_replica + 1
    assert statements() == sent + 1  # the statement alone: no question, no BEGIN, no ROLLBACK
    async with db.read() as session:
        assert session.info["on_replica"]
        assert stale == [tuple(row) for row in await session.execute(ALL.statement)]
    fresh = counted("primary", "fresh")
    assert [row[0] for row in await db.rows(ALL, {}, fresh=True)] == ["a", "b"]
    assert counted("primary", "fresh") == fresh + 1


async def test_an_id_the_replica_does_not_know_yet_is_asked_of_the_primary(
    db: Database, replicated_postgres: ReplicatedServer
) -> None:
    replicated_postgres.pause_replay()
    await write_elsewhere(replicated_postgres, db, "b")
    fresh = counted("primary", "fresh")

    assert await db.rows(ONE, {"id": "b"}) == []  # the replica's answer
    assert await db.rows_by_id(ONE, {"id": "b"}) == [("b",)]
    assert counted("primary", "fresh") == fresh + 1
    assert await db.rows_by_id(ONE, {"id": "a"}) == [("a",)]
    assert await db.rows_by_id(ONE, {"id": "nowhere"}) == []
    assert counted("primary", "fresh") == fresh + 2  # only when the replica had none


async def test_a_caller_reads_their_own_write_on_the_primary_until_the_replica_has_it(
    db: Database, replicated_postgres: ReplicatedServer
) -> None:
    start_request()
    reads_follow_writes_of("ann")
    replicated_postgres.pause_replay()
    async with db.write() as session:
        await session.execute(notes.insert(), {"id": "c", "made_at": MADE, "weight": 3})
    behind = counted("primary", "behind_own_write")

    assert [row[0] for row in await db.rows(ALL, {})] == ["a", "c"]
    assert counted("primary", "behind_own_write") == behind + 1

    replicated_postgres.resume()
    assert await served_by_the_replica(db) == ["a", "c"]


async def test_a_replica_that_freezes_mid_read_leaves_the_read_to_the_primary_within_the_bound(
    db: Database, replicated_postgres: ReplicatedServer
) -> None:
    assert db.replicas is not None
    failed = counted("primary", "replica_failed")
    reading = asyncio.create_task(db.rows(SLOW, {}))
    await asyncio.sleep(0.1)
    began = time.monotonic()
    replicated_postgres.pause_replica()  # it never answers the statement under way

    assert await reading == [(7,)]

    assert time.monotonic() - began < db.replicas.check_timeout + 0.8
    assert counted("primary", "replica_failed") == failed + 1
    assert not db.replicas.replicas[0].answering  # passed over until the monitor sees it again
    none_in_bounds = counted("primary", "none_in_bounds")
    assert [row[0] for row in await db.rows(ALL, {})] == ["a"]
    assert counted("primary", "none_in_bounds") == none_in_bounds + 1


async def test_a_busy_replica_leaves_the_read_to_the_primary(db: Database) -> None:
    assert db.replicas is not None
    replica = db.replicas.replicas[0]
    busy = counted("primary", "replica_busy")
    async with replica.engine.connect() as first, replica.engine.connect() as second:
        await first.exec_driver_sql("SELECT 1")
        await second.exec_driver_sql("SELECT 1")

        assert [row[0] for row in await db.rows(ALL, {})] == ["a"]

    assert counted("primary", "replica_busy") == busy + 1
    assert replica.answering  # busy, not broken: it serves the next read
    assert await served_by_the_replica(db) == ["a"]
