"""Orders quoting from the catalog over HTTP keeps a quote for showing carts, within the
staleness bound, and never places an order at one (orders/recent_quotes.py)."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
from litestar.types import ASGIApp, Receive, Scope, Send

from bazaar.orders.catalog_http import HttpCatalogPrices
from bazaar.orders.prices import Quote
from bazaar.orders.recent_quotes import RecentQuotes
from bazaar.orders.settings import OrdersSettings
from bazaar.platform.errors import Unavailable
from bazaar.platform.money import Money
from bazaar.platform.settings import Env, SettingsError
from tests.e2e.checkout import create_product
from tests.plugin import admin
from tests.served import served

KEPT = 0.3


class Counting:
    """The catalog's app, counting the HTTP requests orders makes to it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.requests = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.requests += 1
        await self.app(scope, receive, send)


@contextlib.asynccontextmanager
async def counted(runtime, seconds: float) -> AsyncIterator[tuple[HttpCatalogPrices, Counting]]:
    """Orders' prices over HTTP to the runtime's catalog, keeping quotes `seconds`."""
    counting = Counting(runtime.app())
    async with served(counting) as url:
        prices = HttpCatalogPrices(url, recent_seconds=seconds)
        try:
            yield prices, counting
        finally:
            await prices.close()


async def test_a_cart_shows_a_kept_quote_within_the_bound_and_an_order_asks(
    runtime, client: httpx.AsyncClient
) -> None:
    headers = await admin(runtime, client)
    product = await create_product(client, headers, stock=5, amount=100)
    async with counted(runtime, KEPT) as (prices, transport):
        first = await prices.quote([product["id"]], recent=True)
        again = await prices.quote([product["id"]], recent=True)
        assert transport.requests == 1
        assert again == first and first[product["id"]].unit_price.amount == 100

        path = f"/v1/products/{product['id']}"
        changed = await client.patch(
            path, json={"price": {"amount": 150, "currency": "USD"}}, headers=headers
        )
        assert changed.status_code == 200, changed.text
        # an order is placed at the price of now, never at a kept one
        placing = await prices.quote([product["id"]])
        assert placing[product["id"]].unit_price.amount == 150
        assert transport.requests == 2

        await asyncio.sleep(KEPT + 0.05)
        shown = await prices.quote([product["id"]], recent=True)
        assert shown[product["id"]].unit_price.amount == 150
        assert transport.requests == 3


async def test_an_unknown_product_is_asked_about_again(runtime, client: httpx.AsyncClient) -> None:
    known = (await create_product(client, await admin(runtime, client), stock=1))["id"]
    async with counted(runtime, KEPT) as (prices, transport):
        for _ in range(2):
            found = await prices.quote([known, "unknown"], recent=True)
            assert set(found) == {known}
        assert transport.requests == 2  # the known one kept, the unknown asked again
        assert await prices.quote([known], recent=True) == found
        assert transport.requests == 2


async def test_nothing_is_kept_when_the_setting_is_zero(runtime, client: httpx.AsyncClient) -> None:
    product = await create_product(client, await admin(runtime, client), stock=1)
    async with counted(runtime, 0) as (prices, transport):
        for _ in range(3):
            await prices.quote([product["id"]], recent=True)
        assert transport.requests == 3


def test_a_quote_is_kept_at_most_the_staleness_bound() -> None:
    assert OrdersSettings.from_env(Env({})).cart_quote_seconds == 1.0
    assert OrdersSettings.from_env(Env({"BAZAAR_CART_QUOTE_SECONDS": "0"})).cart_quote_seconds == 0
    with pytest.raises(SettingsError, match="CART_QUOTE_SECONDS"):
        OrdersSettings.from_env(Env({"BAZAAR_CART_QUOTE_SECONDS": "2"}))


class Catalog:
    """The catalog's side of an ask, answering after `delay` seconds, counting the asks."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.prices = {"a": 100, "b": 200}
        self.asks: list[set[str]] = []
        self.failing = False

    async def ask(self, product_ids) -> dict[str, Quote]:
        self.asks.append(set(product_ids))
        await asyncio.sleep(self.delay)
        if self.failing:
            raise Unavailable("The catalog did not answer in time; retry shortly")
        return {
            p: Quote(p, p.upper(), Money(self.prices[p], "USD"), 1)
            for p in product_ids
            if p in self.prices
        }


def amounts(quotes: dict[str, Quote]) -> dict[str, int]:
    return {p: quote.unit_price.amount for p, quote in quotes.items()}


async def test_carts_missing_a_product_at_once_make_one_ask() -> None:
    catalog, recent = Catalog(delay=0.05), RecentQuotes(1.0)
    answers = await asyncio.gather(*(recent.quote(["a", "b"], catalog.ask) for _ in range(20)))
    assert catalog.asks == [{"a", "b"}]
    assert all(amounts(answer) == {"a": 100, "b": 200} for answer in answers)
    # one product asked about, another joining it: only the other is asked for
    later = RecentQuotes(1.0)
    first = asyncio.ensure_future(later.quote(["a"], catalog.ask))
    await asyncio.sleep(0)
    both = await later.quote(["a", "b"], catalog.ask)
    assert amounts(both) == {"a": 100, "b": 200} and amounts(await first) == {"a": 100}
    assert catalog.asks[1:] == [{"a"}, {"b"}]


async def test_a_quote_answers_until_its_end_then_the_catalog_is_asked() -> None:
    catalog, recent = Catalog(delay=0.02), RecentQuotes(0.4)
    assert amounts(await recent.quote(["a"], catalog.ask)) == {"a": 100}
    catalog.prices["a"] = 150
    await asyncio.sleep(0.25)  # past half of 0.4 s, short of its end: not asked again
    assert amounts(await recent.quote(["a"], catalog.ask)) == {"a": 100}
    assert len(catalog.asks) == 1
    await asyncio.sleep(0.2)
    assert amounts(await recent.quote(["a"], catalog.ask)) == {"a": 150}
    assert len(catalog.asks) == 2


async def test_a_failed_ask_reaches_every_cart_waiting_and_keeps_nothing() -> None:
    catalog, recent = Catalog(delay=0.02), RecentQuotes(1.0)
    catalog.failing = True
    answers = await asyncio.gather(
        *(recent.quote(["a"], catalog.ask) for _ in range(5)), return_exceptions=True
    )
    assert len(catalog.asks) == 1
    assert all(isinstance(answer, Unavailable) for answer in answers)
    catalog.failing = False
    assert amounts(await recent.quote(["a"], catalog.ask)) == {"a": 100}
    assert len(catalog.asks) == 2
