"""Catalog's product use cases against a real SQLite database."""

import pytest

from bazaar.catalog import service
from bazaar.catalog.models import Product, ProductRow
from bazaar.catalog.service import ProductChanges
from bazaar.platform.db import Database
from bazaar.platform.errors import Conflict, NotFound
from bazaar.platform.money import Money
from tests.catalog.conftest import add_product, outbox_events, stock_of


async def test_a_duplicate_sku_is_a_conflict_on_create_and_on_change(catalog: Database) -> None:
    await add_product(catalog, sku="MUG-1")
    other = await add_product(catalog, sku="MUG-2")
    with pytest.raises(Conflict):
        await add_product(catalog, sku="MUG-1")
    with pytest.raises(Conflict):
        async with catalog.write() as session:
            await service.update_product(session, other, ProductChanges(sku="MUG-1"))


async def test_every_change_records_product_updated(catalog: Database) -> None:
    product_id = await add_product(catalog)
    async with catalog.write() as session:
        await service.update_product(session, product_id, ProductChanges(name="Better widget"))
    async with catalog.write() as session:
        await service.update_product(session, product_id, ProductChanges(name="Better widget"))
    async with catalog.write() as session:
        await service.delete_product(session, product_id)
    events = await outbox_events(catalog, "product.updated")
    # create, rename, delete; the no-op change records nothing
    assert [event["product_id"] for event in events] == [product_id] * 3


async def test_update_changes_only_the_given_fields(catalog: Database) -> None:
    product_id = await add_product(catalog, stock=4, category="tools")
    async with catalog.write() as session:
        changes = ProductChanges(price=Money(1299, "EUR"), category="kitchen")
        await service.update_product(session, product_id, changes)
    async with catalog.read() as session:
        product = await service.get_product(session, product_id)
        categories = await service.list_categories(session)
    assert (product.price_amount, product.currency, product.category) == (1299, "EUR", "kitchen")
    assert (product.name, product.stock) == ("Widget", 4)
    assert categories == [("kitchen", 1)]


async def test_a_deleted_product_is_not_fetched_listed_or_counted(catalog: Database) -> None:
    kept = await add_product(catalog, sku="KEEP")
    gone = await add_product(catalog, sku="GONE")
    async with catalog.write() as session:
        await service.delete_product(session, gone)
    async with catalog.read() as session:
        with pytest.raises(NotFound):
            await service.get_product(session, gone)
        categories = await service.list_categories(session)
    listed = await service.list_products(catalog, limit=10)
    live = await service.products_on_sale(catalog, [kept, gone, "unknown"])
    assert [p.id for p in listed] == [kept]
    assert [p.id for p in live] == [kept]
    assert categories == [("tools", 1)]
    # its sku is free again
    assert await add_product(catalog, sku="GONE")


async def test_listing_filters_by_category_and_name_in_id_order(catalog: Database) -> None:
    red = await add_product(catalog, name="Red Kettle", category="kitchen")
    await add_product(catalog, name="Blue Hammer", category="tools")
    steel = await add_product(catalog, name="Steel kettle", category="kitchen")
    await add_product(catalog, name="100%_sale", category="kitchen")
    kettles = await service.list_products(catalog, limit=10, query="KETTLE")
    kitchen = await service.list_products(catalog, limit=10, category="kitchen")
    after_red = await service.list_products(catalog, limit=10, after=red, query="kettle")
    literal = await service.list_products(catalog, limit=10, query="0%_")
    kitchen_kettles = await service.list_products(
        catalog, limit=10, category="kitchen", query="kettle", fresh=True
    )
    assert [p.id for p in kettles] == [red, steel]
    assert len(kitchen) == 3 and [p.id for p in kitchen][:2] == [red, steel]
    assert [p.id for p in after_red] == [steel]
    assert [p.name for p in literal] == ["100%_sale"]
    assert [p.id for p in kitchen_kettles] == [red, steel]


def test_a_product_row_reads_every_column_of_a_product() -> None:
    assert sorted(ProductRow._fields) == sorted(Product.__table__.c.keys())


async def test_stock_can_never_be_negative_in_the_database(catalog: Database) -> None:
    from sqlalchemy import update
    from sqlalchemy.exc import IntegrityError

    product_id = await add_product(catalog, stock=1)
    with pytest.raises(IntegrityError):
        async with catalog.write() as session:
            await session.execute(
                update(Product).where(Product.id == product_id).values(stock=Product.stock - 2)
            )
    assert await stock_of(catalog, product_id) == 1
