"""Every SQL statement a process sends is counted under the logical database it belongs to, on
SQLite and PostgreSQL, on the primary, the reader and every replica."""

from pathlib import Path

import httpx
from prometheus_client import REGISTRY
from sqlalchemy import text

from bazaar.platform.postgres import postgres_database
from bazaar.platform.sqlite import sqlite_database


def statements(database: str) -> float:
    sample = REGISTRY.get_sample_value("bazaar_db_statements_total", {"database": database})
    return sample or 0.0


async def test_a_request_that_reads_the_catalog_counts_catalog_statements(
    client: httpx.AsyncClient,
) -> None:
    before = statements("catalog")
    response = await client.get("/v1/products")
    assert response.status_code == 200
    assert statements("catalog") > before


async def test_sqlite_counts_each_statement_but_not_its_transactions_control(
    tmp_path: Path,
) -> None:
    db = sqlite_database("counted_sqlite", tmp_path / "counted.db")
    try:
        before = statements("counted_sqlite")
        async with db.write() as session:
            await session.execute(text("CREATE TABLE thing (id INTEGER PRIMARY KEY)"))
            await session.execute(text("INSERT INTO thing (id) VALUES (1)"))
        # BEGIN IMMEDIATE and COMMIT run on the driver, uncounted, as asyncpg's on PostgreSQL
        assert statements("counted_sqlite") == before + 2
        async with db.read() as session:
            assert (await session.execute(text("SELECT count(*) FROM thing"))).scalar() == 1
        assert statements("counted_sqlite") == before + 3  # the SELECT on the reader
    finally:
        await db.dispose()


async def test_postgresql_counts_statements_on_the_primary_and_on_each_replica(url: str) -> None:
    # the primary named as its own replica: only where the statements run matters here
    db = postgres_database("counted_pg", url, replica_urls=[url])
    assert db.replicas is not None
    [replica] = db.replicas.replicas
    try:
        for engine in (db.primary, replica.engine):  # the first connection asks the server
            async with engine.connect() as connection:  # about itself: counted, not measured
                await connection.execute(text("SELECT 1"))
        before = statements("counted_pg")
        async with db.write() as session:
            await session.execute(text("SELECT 1"))
            await session.execute(text("SELECT 2"))
        # asyncpg sends BEGIN and COMMIT itself, uncounted; a commit of nobody's (no caller)
        # does not ask where the WAL ends: the next read of the process does (replicas.py)
        assert statements("counted_pg") == before + 2
        async with replica.engine.connect() as connection:
            await connection.execute(text("SELECT 3"))
        assert statements("counted_pg") == before + 3
    finally:
        await db.dispose()
