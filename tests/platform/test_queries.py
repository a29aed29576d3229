"""A `Query` reads the same rows, with the same Python values, whichever path serves it: SQLite's
own connection inline, or a read session (PostgreSQL, and SQLite's session for comparison)."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import BigInteger, Column, MetaData, String, Table, bindparam, select
from sqlalchemy.engine import make_url

from bazaar.platform.db import Database, Timestamp
from bazaar.platform.postgres import drop_database, ensure_database, postgres_database
from bazaar.platform.queries import Query
from bazaar.platform.sqlite import sqlite_database
from tests.postgres import fresh_database_url, require_server

metadata = MetaData()
things = Table(
    "query_thing",
    metadata,
    Column("id", String(10), primary_key=True),
    Column("owner", String(10)),
    Column("price", BigInteger),
    Column("made_at", Timestamp()),
    Column("gone_at", Timestamp(), nullable=True),
)
OWNED = Query(
    select(things.c.id, things.c.price, things.c.made_at, things.c.gone_at)
    .where(things.c.owner == bindparam("owner"))
    .order_by(things.c.id)
    .limit(bindparam("limit"))
)
CHOSEN = Query(
    select(things.c.id, things.c.made_at)
    .where(things.c.id.in_(bindparam("ids", expanding=True)), things.c.gone_at.is_(None))
    .order_by(things.c.id)
    .limit(10)
)
MADE = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    url = None
    if request.param == "sqlite":
        database = sqlite_database("queried", tmp_path / "queried.db")
        assert database.inline_reader is not None
    else:
        await require_server()
        url = make_url(fresh_database_url())
        await ensure_database(url)
        database = postgres_database("queried", url.render_as_string(hide_password=False))
    async with database.primary.begin() as connection:
        await connection.run_sync(metadata.drop_all)
        await connection.run_sync(metadata.create_all)
    async with database.write() as session:
        await session.execute(
            things.insert(),
            [
                {"id": "a", "owner": "ann", "price": 2**40, "made_at": MADE, "gone_at": None},
                {
                    "id": "b",
                    "owner": "ann",
                    "price": 7,
                    "made_at": MADE + timedelta(days=1),
                    "gone_at": MADE,
                },
                {"id": "c", "owner": "bob", "price": 9, "made_at": MADE, "gone_at": None},
            ],
        )
    yield database
    await database.dispose()
    if url is not None:
        await drop_database(url)


async def test_rows_carry_the_values_a_session_reads(db: Database) -> None:
    rows = await db.rows(OWNED, {"owner": "ann", "limit": 5})
    assert rows == [
        ("a", 2**40, MADE, None),
        ("b", 7, MADE + timedelta(days=1), MADE),
    ]
    assert all(row[2].tzinfo is not None for row in rows)  # aware, as `Timestamp` reads them
    async with db.read() as session:
        through_session = [
            tuple(r) for r in await session.execute(OWNED.statement, {"owner": "ann", "limit": 5})
        ]
    assert rows == through_session
    assert await db.rows(OWNED, {"owner": "ann", "limit": 1}) == rows[:1]
    assert await db.rows(OWNED, {"owner": "nobody", "limit": 5}) == []


async def test_a_list_bound_to_in_takes_any_length(db: Database) -> None:
    assert await db.rows(CHOSEN, {"ids": ["c", "a", "b", "zz"]}) == [("a", MADE), ("c", MADE)]
    assert await db.rows(CHOSEN, {"ids": ["c"]}) == [("c", MADE)]
    assert await db.rows(CHOSEN, {"ids": []}) == []
    assert await db.rows_by_id(CHOSEN, {"ids": ["a"]}) == [("a", MADE)]


async def test_rows_count_as_statements_of_their_database(db: Database) -> None:
    def counted() -> float:
        found = REGISTRY.get_sample_value("bazaar_db_statements_total", {"database": "queried"})
        return found or 0.0

    before = counted()
    await db.rows(OWNED, {"owner": "ann", "limit": 5})
    assert counted() > before


async def test_sqlite_rows_see_a_commit_at_once_and_never_write(tmp_path: Path) -> None:
    db = sqlite_database("queried", tmp_path / "queried.db")
    try:
        async with db.primary.begin() as connection:
            await connection.run_sync(metadata.create_all)
        assert await db.rows(CHOSEN, {"ids": ["d"]}) == []
        async with db.write() as session:
            await session.execute(
                things.insert(), {"id": "d", "owner": "dan", "price": 1, "made_at": MADE}
            )
        assert await db.rows(CHOSEN, {"ids": ["d"]}) == [("d", MADE)]
        assert db.inline_reader is not None
        writing = Query(things.delete().returning(things.c.id))  # type: ignore[arg-type]
        with pytest.raises(Exception, match="readonly"):
            db.inline_reader.rows(writing, {})
    finally:
        await db.dispose()
