"""Fixtures for orders' use cases: two migrated SQLite order shards and a catalog price list."""

from collections.abc import AsyncIterator, Collection
from pathlib import Path

import pytest

from bazaar.orders.prices import Quote
from bazaar.orders.wiring import SCHEMA
from bazaar.platform.ids import new_id
from bazaar.platform.money import Money
from bazaar.platform.shards import ShardedDatabase, ShardMap
from tests.plugin import migrated


class PriceList:
    """What the catalog sells, kept in memory: the catalog's side of orders' `CatalogPrices`."""

    def __init__(self) -> None:
        self.quotes: dict[str, Quote] = {}
        self.asked: list[bool] = []
        """Whether each question allowed a recent quote (`recent`), in turn."""

    def sell(self, amount: int, currency: str = "USD", stock: int = 10) -> str:
        product_id = new_id()
        self.reprice(product_id, amount, currency, stock)
        return product_id

    def reprice(self, product_id: str, amount: int, currency: str = "USD", stock: int = 10) -> None:
        self.quotes[product_id] = Quote(product_id, "Widget", Money(amount, currency), stock)

    def withdraw(self, product_id: str) -> None:
        del self.quotes[product_id]

    async def quote(
        self, product_ids: Collection[str], *, recent: bool = False
    ) -> dict[str, Quote]:
        self.asked.append(recent)
        return {i: self.quotes[i] for i in product_ids if i in self.quotes}


@pytest.fixture
async def orders(tmp_path: Path) -> AsyncIterator[ShardedDatabase]:
    async with (
        migrated("orders_0", tmp_path, SCHEMA) as first,
        migrated("orders_1", tmp_path, SCHEMA) as second,
    ):
        yield ShardedDatabase([first, second], ShardMap(2))


@pytest.fixture
def prices() -> PriceList:
    return PriceList()


def customers_on_each_shard(orders: ShardedDatabase) -> list[str]:
    """One customer id per shard, in shard order."""
    found: dict[int, str] = {}
    while len(found) < len(orders.shards):
        customer_id = new_id()
        index = list(orders.shards).index(orders.for_customer(customer_id))
        found.setdefault(index, customer_id)
    return [found[i] for i in range(len(orders.shards))]
