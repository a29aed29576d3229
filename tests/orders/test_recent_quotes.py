"""Orders quoting from the catalog over HTTP keeps a quote for showing carts, within the
staleness bound, and never places an order at one (orders/recent_quotes.py)."""

import asyncio

import httpx
import pytest

from bazaar.orders.catalog_http import HttpCatalogPrices
from bazaar.orders.settings import OrdersSettings
from bazaar.platform.settings import Env, SettingsError
from tests.e2e.checkout import create_product
from tests.plugin import admin

KEPT = 0.3


class CountingTransport(httpx.AsyncBaseTransport):
    """The catalog's app, counting the requests orders makes to it."""

    def __init__(self, app) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.requests = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        return await self.inner.handle_async_request(request)


async def test_a_cart_shows_a_kept_quote_within_the_bound_and_an_order_asks(
    runtime, client: httpx.AsyncClient
) -> None:
    headers = await admin(runtime, client)
    product = await create_product(client, headers, stock=5, amount=100)
    transport = CountingTransport(runtime.app())
    prices = HttpCatalogPrices("http://catalog", recent_seconds=KEPT, transport=transport)
    try:
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
    finally:
        await prices.close()


async def test_an_unknown_product_is_asked_about_again(runtime, client: httpx.AsyncClient) -> None:
    headers = await admin(runtime, client)
    known = await create_product(client, headers, stock=1)
    transport = CountingTransport(runtime.app())
    prices = HttpCatalogPrices("http://catalog", recent_seconds=KEPT, transport=transport)
    try:
        for _ in range(2):
            found = await prices.quote([known["id"], "unknown"], recent=True)
            assert set(found) == {known["id"]}
        assert transport.requests == 2  # the known one kept, the unknown asked again
        assert await prices.quote([known["id"]], recent=True) == {known["id"]: found[known["id"]]}
        assert transport.requests == 2
    finally:
        await prices.close()


async def test_nothing_is_kept_when_the_setting_is_zero(runtime, client: httpx.AsyncClient) -> None:
    headers = await admin(runtime, client)
    product = await create_product(client, headers, stock=1)
    transport = CountingTransport(runtime.app())
    prices = HttpCatalogPrices("http://catalog", recent_seconds=0, transport=transport)
    try:
        for _ in range(3):
            await prices.quote([product["id"]], recent=True)
        assert transport.requests == 3
    finally:
        await prices.close()


def test_a_quote_is_kept_at_most_the_staleness_bound() -> None:
    assert OrdersSettings.from_env(Env({})).cart_quote_seconds == 1.0
    assert OrdersSettings.from_env(Env({"BAZAAR_CART_QUOTE_SECONDS": "0"})).cart_quote_seconds == 0
    with pytest.raises(SettingsError, match="CART_QUOTE_SECONDS"):
        OrdersSettings.from_env(Env({"BAZAAR_CART_QUOTE_SECONDS": "2"}))
