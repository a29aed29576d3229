"""Name search (`?q=`) through the index each database keeps, on SQLite and PostgreSQL: any part
of a name in any case, in step with every change, over the products made before the index."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bazaar.catalog import search, service
from bazaar.catalog.seed import seed_products
from bazaar.catalog.service import ProductChanges
from bazaar.catalog.wiring import SCHEMA
from bazaar.platform import migrations
from bazaar.platform.db import Database
from bazaar.platform.postgres import drop_database, ensure_database, postgres_database
from bazaar.platform.queries import bound
from bazaar.platform.sqlite import sqlite_database
from tests.catalog.conftest import add_product
from tests.postgres import fresh_database_url, require_server

BEFORE_SEARCH = "catalog@3c9d4e7f1a2b"


@pytest.fixture(params=["sqlite", "postgresql"])
async def unmigrated(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """An empty catalog database on SQLite, or on the machine's PostgreSQL."""
    if request.param == "sqlite":
        db = sqlite_database("catalog", tmp_path / "catalog.db")
        try:
            yield db
        finally:
            await db.dispose()
        return
    await require_server()
    url = make_url(fresh_database_url())
    await ensure_database(url)
    db = postgres_database("catalog", url.render_as_string(hide_password=False))
    try:
        yield db
    finally:
        await db.dispose()
        await drop_database(url)


@pytest.fixture
async def catalog_db(unmigrated: Database) -> Database:
    await migrations.upgrade(unmigrated, SCHEMA)
    return unmigrated


async def names_found(db: Database, query: str, limit: int = 10, after: str | None = None) -> list:
    found = await service.list_products(db, limit=limit, query=query, after=after)
    return [product.name for product in found]


async def test_a_search_finds_any_part_of_a_name_in_any_case(catalog_db: Database) -> None:
    red = await add_product(catalog_db, name="Red Kettle")
    await add_product(catalog_db, name="Steel KETTLE")
    await add_product(catalog_db, name="Blue Hammer")
    await add_product(catalog_db, name="100%_sale")
    gone = await add_product(catalog_db, name="Kettlebell")
    async with catalog_db.write() as session:
        await service.delete_product(session, gone)

    assert await names_found(catalog_db, "kettle") == ["Red Kettle", "Steel KETTLE"]
    assert await names_found(catalog_db, "eTTL") == ["Red Kettle", "Steel KETTLE"]
    assert await names_found(catalog_db, "d ke") == ["Red Kettle"]  # across the space
    assert await names_found(catalog_db, "0%_") == ["100%_sale"]  # `%` and `_` as typed
    assert await names_found(catalog_db, "KE") == ["Red Kettle", "Steel KETTLE"]  # no trigram
    assert await names_found(catalog_db, "hammers") == []
    assert await names_found(catalog_db, "kettle", limit=1) == ["Red Kettle"]
    assert await names_found(catalog_db, "kettle", after=red) == ["Steel KETTLE"]


async def test_a_product_is_found_by_its_name_of_now(catalog_db: Database) -> None:
    pot = await add_product(catalog_db, name="Copper Pot")
    assert await names_found(catalog_db, "copper pot") == ["Copper Pot"]

    async with catalog_db.write() as session:
        await service.update_product(session, pot, ProductChanges(name="Brass Pan"))
    await add_product(catalog_db, name="Copper Kettle")
    assert await names_found(catalog_db, "copper") == ["Copper Kettle"]
    assert await names_found(catalog_db, "BRASS PAN") == ["Brass Pan"]

    async with catalog_db.write() as session:
        await service.update_product(session, pot, ProductChanges(stock=3))  # name unchanged
    assert await names_found(catalog_db, "brass") == ["Brass Pan"]

    async with catalog_db.write() as session:
        await service.delete_product(session, pot)
    assert await names_found(catalog_db, "brass") == []


async def test_the_index_covers_the_products_made_before_it(unmigrated: Database) -> None:
    await migrations.upgrade(unmigrated, SCHEMA, to=BEFORE_SEARCH)
    await add_product(unmigrated, name="Walnut Desk")
    await add_product(unmigrated, name="Oak Desk")
    await migrations.upgrade(unmigrated, SCHEMA)
    assert await names_found(unmigrated, "nut des") == ["Walnut Desk"]
    assert await names_found(unmigrated, "desk") == ["Walnut Desk", "Oak Desk"]


@pytest.mark.parametrize("unmigrated", ["postgresql"], indirect=True)
async def test_postgresql_reads_the_trigram_index_for_a_rare_name(catalog_db: Database) -> None:
    async with catalog_db.read() as session:
        definition = await session.scalar(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_product_name_trigram'")
        )
    assert definition is not None
    assert "USING gin (lower((name)::text) gin_trgm_ops)" in definition

    await seed_products(catalog_db, 20_000, seed=7)  # and fresh statistics
    await add_product(catalog_db, name="Walnut Desk")
    assert await names_found(catalog_db, "NUT DESK") == ["Walnut Desk"]

    # the statement that search ran, as the driver runs it
    like = search.statement(search.Shape(after=False, category=False, search=search.Search.LIKE))
    params = {"limit": 10, "pattern": search.like_pattern("NUT DESK")}
    sql, values = bound(like.compiled(catalog_db.primary.dialect), params)
    async with catalog_db.primary.connect() as connection:
        driver = (await connection.get_raw_connection()).driver_connection
        plan = [row[0] for row in await driver.fetch(f"EXPLAIN {sql}", *values)]
    assert any("Bitmap Index Scan on ix_product_name_trigram" in line for line in plan)
