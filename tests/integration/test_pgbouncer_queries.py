"""A `Query` through a real PgBouncer in transaction pooling (platform/pg_reads.py): each
statement runs outside any transaction, so PgBouncer may hand its server connection to another
client between any two of them; many at once, on more client connections than PgBouncer has
server connections, still read what a session reads (the PgBouncer of test_pgbouncer)."""

import asyncio
import enum
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Column, Enum, Integer, MetaData, String, Table, bindparam, select
from sqlalchemy.engine import make_url

from bazaar.platform.db import Database
from bazaar.platform.postgres import (
    PoolSettings,
    drop_database,
    ensure_database,
    postgres_database,
)
from bazaar.platform.queries import Query
from bazaar.runtime.cluster import pgbouncer
from tests.integration.test_pgbouncer import SERVER_POOL, bouncer  # noqa: F401
from tests.postgres import fresh_database_url, require_server


class Shade(enum.Enum):
    LIGHT = "light"
    DARK = "dark"


metadata = MetaData()
swatches = Table(
    "bounced_swatch",
    metadata,
    Column("id", String(10), primary_key=True),
    Column("shade", Enum(Shade, name="bounced_shade")),
    Column("rank", Integer),
)
ONE = Query(select(swatches).where(swatches.c.id == bindparam("id")))
CHOSEN = Query(
    select(swatches.c.id, swatches.c.shade)
    .where(swatches.c.id.in_(bindparam("ids", expanding=True)))
    .where(swatches.c.shade.in_(bindparam("shades", expanding=True)))
    .order_by(swatches.c.id)
)
ROWS = [
    {"id": f"s{n:02}", "shade": Shade.DARK if n % 3 else Shade.LIGHT, "rank": n} for n in range(30)
]


@pytest.fixture
async def db(bouncer: pgbouncer.Bouncer) -> AsyncIterator[Database]:  # noqa: F811
    """Made on the server itself, then read through PgBouncer only."""
    await require_server()
    direct_url = fresh_database_url()
    await ensure_database(make_url(direct_url))
    direct = postgres_database("bounced_direct", direct_url)
    try:
        async with direct.primary.begin() as connection:
            await connection.run_sync(metadata.create_all)
            await connection.execute(swatches.insert(), ROWS)
        await direct.dispose()
        pooled = postgres_database(
            "bounced",
            bouncer.url(direct_url),
            PoolSettings(size=4 * SERVER_POOL, overflow=0, timeout=10),
            pooler="pgbouncer",
        )
        try:
            yield pooled
        finally:
            await pooled.dispose()
    finally:
        await drop_database(make_url(direct_url))


async def test_queries_at_once_through_pgbouncer_read_what_a_session_reads(db: Database) -> None:
    assert db.primary.url.port != 5432

    async def one(n: int) -> list[tuple]:
        return await db.rows(ONE, {"id": f"s{n % 30:02}"})

    async def chosen(n: int) -> list[tuple]:
        ids = [f"s{m:02}" for m in range(n % 30)]
        return await db.rows(CHOSEN, {"ids": ids, "shades": [Shade.LIGHT, Shade.DARK][: n % 3]})

    async with asyncio.timeout(60):
        ones = await asyncio.gather(*(one(n) for n in range(120)))
        chosens = await asyncio.gather(*(chosen(n) for n in range(120)))

    for n, rows in enumerate(ones):
        expected = ROWS[n % 30]
        assert rows == [(expected["id"], expected["shade"], expected["rank"])]
    for n, rows in enumerate(chosens):
        shades = [Shade.LIGHT, Shade.DARK][: n % 3]
        assert rows == [
            (row["id"], row["shade"]) for row in ROWS[: n % 30] if row["shade"] in shades
        ]
    async with db.read() as session:
        params = {"ids": ["s01", "s03", "s04"], "shades": list(Shade)}
        through_session = [tuple(r) for r in await session.execute(CHOSEN.statement, params)]
    assert await db.rows(CHOSEN, params) == through_session
    assert db.primary.pool.checkedin() > SERVER_POOL  # type: ignore[attr-defined]
