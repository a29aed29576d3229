"""Bodies are typed strictly and text refuses control characters (API.md v1.1): a string "1" or
a float 2.0 where an integer is documented is 422, never converted; a NUL in an email address
or a U+0001 in a name is 422; a body nested 100,000 levels deep is a clean 4xx, not a 500."""

import uuid

import httpx
import pytest

from bazaar.runtime.embedded import Runtime
from tests.orders.test_api import product
from tests.payments.test_api import ada, keyed, paid_order
from tests.plugin import admin, customer


def product_body(**changes: object) -> dict:
    body = {
        "sku": f"SKU-{uuid.uuid4().hex[:10]}",
        "name": "Difference Engine",
        "category": "machines",
        "price": {"amount": 1999, "currency": "USD"},
        "stock": 5,
    }
    return body | changes


def assert_invalid_at(response: httpx.Response, loc: list) -> None:
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["type"] == "urn:bazaar:problem:validation"
    assert [error["loc"] for error in problem["errors"]] == [loc]


@pytest.mark.parametrize("stock", ["5", 5.0, 5.5, True])
async def test_stock_that_is_not_an_integer_is_422(
    client: httpx.AsyncClient, runtime: Runtime, stock: object
) -> None:
    created = await client.post(
        "/v1/products", json=product_body(stock=stock), headers=await admin(runtime, client)
    )
    assert_invalid_at(created, ["body", "stock"])


@pytest.mark.parametrize("amount", ["1999", 1999.0])
async def test_a_money_amount_that_is_not_an_integer_is_422(
    client: httpx.AsyncClient, runtime: Runtime, amount: object
) -> None:
    price = {"amount": amount, "currency": "USD"}
    created = await client.post(
        "/v1/products", json=product_body(price=price), headers=await admin(runtime, client)
    )
    assert_invalid_at(created, ["body", "price", "amount"])


@pytest.mark.parametrize("quantity", ["2", 2.0])
async def test_a_quantity_that_is_not_an_integer_is_422(
    client: httpx.AsyncClient, runtime: Runtime, quantity: object
) -> None:
    item = await product(client, await admin(runtime, client))
    headers = await customer(client)
    put = await client.put(f"/v1/cart/items/{item}", json={"quantity": quantity}, headers=headers)
    assert_invalid_at(put, ["body", "quantity"])
    assert (await client.get("/v1/cart", headers=headers)).json()["items"] == []


async def test_a_refund_amount_that_is_not_an_integer_is_422(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    customer_id, _ = await ada(client)
    payment_id = await paid_order(runtime, customer_id)
    headers = keyed(await admin(runtime, client), "refund-float")
    body = {"amount": {"amount": 1000.0, "currency": "USD"}}
    refused = await client.post(f"/v1/payments/{payment_id}/refund", json=body, headers=headers)
    assert_invalid_at(refused, ["body", "amount", "amount"])
    shown = await client.get(f"/v1/payments/{payment_id}", headers=headers)
    assert shown.json()["refunded_amount"] == {"amount": 0, "currency": "USD"}


async def test_a_body_nested_100000_levels_deep_is_refused_cleanly(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    headers = {**await admin(runtime, client), "Content-Type": "application/json"}
    for deep in ("[" * 100_000 + "]" * 100_000, '{"a":' * 100_000 + "1" + "}" * 100_000):
        answer = await client.post("/v1/products", content=deep, headers=headers)
        assert answer.status_code in (400, 422), answer.text
        assert answer.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("field", "value"),
    [("email", "ada\u0000@example.com"), ("email", "ada@exam\u0001ple.com"), ("name", "Ada\u0001")],
)
async def test_control_characters_in_text_are_422(
    client: httpx.AsyncClient, field: str, value: str
) -> None:
    body = {"email": "ada@example.com", "password": "correct horse", "name": "Ada"} | {field: value}
    registered = await client.post("/v1/auth/register", json=body)
    assert_invalid_at(registered, ["body", field])


async def test_free_text_keeps_its_tabs_and_lines(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    description = "Line one,\tindented.\nLine two."
    created = await client.post(
        "/v1/products",
        json=product_body(description=description),
        headers=await admin(runtime, client),
    )
    assert created.status_code == 201, created.text
    assert created.json()["description"] == description


async def test_a_nul_in_the_search_does_not_match_everything(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await product(client, await admin(runtime, client))
    search = await client.get("/v1/products", params={"q": "\u0000"})
    assert search.status_code == 422, search.text
