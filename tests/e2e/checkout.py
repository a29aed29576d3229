"""Steps of a storefront's checkout over HTTP, shared by the end-to-end tests."""

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx

from chaos.shop import ADDRESS

T = TypeVar("T")


async def create_product(
    client: httpx.AsyncClient, admin: dict[str, str], *, stock: int, amount: int = 1999, **fields
) -> dict:
    body = {
        "sku": fields.pop("sku", f"SKU-{uuid.uuid4().hex[:10]}"),
        "name": fields.pop("name", "Analytical Engine"),
        "description": "Computes anything computable.",
        "category": fields.pop("category", "machines"),
        "price": {"amount": amount, "currency": "USD"},
        "stock": stock,
        **fields,
    }
    response = await client.post("/v1/products", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


async def place_order(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    items: list[dict] | None,
    payment_method: str = "pm_card_visa",
    key: str | None = None,
) -> httpx.Response:
    body: dict = {"payment_method": payment_method, "shipping_address": ADDRESS}
    if items is not None:
        body["items"] = items
    return await client.post(
        "/v1/orders",
        json=body,
        headers={**headers, "Idempotency-Key": key or uuid.uuid4().hex},
    )


async def settled(client: httpx.AsyncClient, headers: dict[str, str], order_id: str) -> dict:
    """Poll the order until the saga has moved it out of `pending` (at most 10 s)."""

    async def moved() -> dict | None:
        response = await client.get(f"/v1/orders/{order_id}", headers=headers)
        assert response.status_code == 200, response.text
        order = response.json()
        return order if order["status"] != "pending" else None

    return await eventually(moved, within=10)


async def stock_of(client: httpx.AsyncClient, product_id: str) -> int:
    response = await client.get(f"/v1/products/{product_id}")
    assert response.status_code == 200, response.text
    return response.json()["stock"]


async def eventually(check: Callable[[], Awaitable[T]], within: float = 5) -> T:
    """Wait until `check()` returns a truthy value, and return it; fail after `within` s."""
    async with asyncio.timeout(within):
        while not (value := await check()):  # noqa: ASYNC110 (a client polls, as here)
            await asyncio.sleep(0.02)
        return value
