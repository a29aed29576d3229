"""Fixtures for catalog's use cases: a migrated SQLite catalog database, products, orders."""

from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from cashews import Cache
from sqlalchemy import select

from bazaar.catalog import service
from bazaar.catalog.pages import ProductPages
from bazaar.catalog.wiring import SCHEMA
from bazaar.orders.events import OrderCancelled, OrderLine, OrderPlaced
from bazaar.platform.db import Database
from bazaar.platform.events import Envelope
from bazaar.platform.ids import new_id
from bazaar.platform.money import Money
from bazaar.platform.schema import outbox_message
from tests.plugin import migrated


@pytest.fixture
async def catalog(tmp_path: Path) -> AsyncIterator[Database]:
    async with migrated("catalog", tmp_path, SCHEMA) as db:
        yield db


@pytest.fixture
async def pages() -> AsyncIterator[ProductPages]:
    cache = Cache()
    cache.setup("mem://?size=1000")
    yield ProductPages(cache, ttl=1.0)
    await cache.close()


async def add_product(
    db: Database, stock: int = 10, sku: str | None = None, amount: int = 500, **fields: str
) -> str:
    data = service.NewProduct(
        sku=sku or f"SKU-{new_id()}",
        name=fields.get("name", "Widget"),
        category=fields.get("category", "tools"),
        price=Money(amount, "USD"),
        stock=stock,
    )
    async with db.write() as session:
        product = await service.create_product(session, data)
    return product.id


async def stock_of(db: Database, product_id: str) -> int:
    async with db.read() as session:
        return (await service.get_product(session, product_id)).stock


def placed(*lines: tuple[str, int], order_id: str | None = None) -> OrderPlaced:
    order_lines = [OrderLine(pid, quantity, Money(500, "USD")) for pid, quantity in lines]
    return OrderPlaced(
        order_id=order_id or new_id(),
        customer_id="customer-1",
        lines=order_lines,
        total=Money(500 * sum(quantity for _pid, quantity in lines), "USD"),
        payment_method="pm_card_visa",
    )


def cancelled(order_id: str) -> OrderCancelled:
    return OrderCancelled(
        order_id=order_id,
        customer_id="customer-1",
        reason="customer_cancelled",
        total=Money(500, "USD"),
    )


async def outbox_events(db: Database, event_type: str) -> list[dict]:
    """The `data` of every event of `event_type` in the catalog's outbox, oldest first."""
    async with db.read() as session:
        rows = await session.scalars(
            select(outbox_message.c.envelope)
            .where(outbox_message.c.type == event_type)
            .order_by(outbox_message.c.id)
        )
        return [msgspec.to_builtins(Envelope.decode(raw).data) for raw in rows]
