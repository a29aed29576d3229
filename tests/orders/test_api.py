"""Cart and orders over HTTP: one test per endpoint and error case."""

import asyncio
import json
import uuid

import httpx

from bazaar.platform import idempotency
from bazaar.platform.clock import utcnow
from bazaar.platform.schema import idempotency_record
from bazaar.platform.statements import insert_ignoring_duplicates
from bazaar.runtime.embedded import Runtime
from tests.e2e.checkout import ADDRESS
from tests.plugin import admin, customer


async def product(client: httpx.AsyncClient, admin_headers: dict, amount: int = 1999) -> str:
    body = {
        "sku": f"SKU-{uuid.uuid4().hex[:10]}",
        "name": "Analytical Engine",
        "category": "machines",
        "price": {"amount": amount, "currency": "USD"},
        "stock": 50,
    }
    response = await client.post("/v1/products", json=body, headers=admin_headers)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def order_body(items: list[dict] | None = None, **changes) -> dict:
    body: dict = {"payment_method": "pm_card_visa", "shipping_address": ADDRESS, **changes}
    if items is not None:
        body["items"] = items
    return body


def keyed(headers: dict, key: str | None = None) -> dict:
    return {**headers, "Idempotency-Key": key or uuid.uuid4().hex}


async def test_every_route_needs_a_token(client: httpx.AsyncClient) -> None:
    calls = [
        client.get("/v1/cart"),
        client.put("/v1/cart/items/p1", json={"quantity": 1}),
        client.delete("/v1/cart/items/p1"),
        client.post("/v1/orders", json=order_body(), headers={"Idempotency-Key": "k"}),
        client.get("/v1/orders"),
        client.get("/v1/orders/x"),
        client.post("/v1/orders/x/cancel"),
    ]
    for response in await asyncio.gather(*calls):
        assert response.status_code == 401, response.request.url
        assert response.headers["content-type"] == "application/problem+json"


async def test_an_empty_cart(client: httpx.AsyncClient) -> None:
    headers = await customer(client)
    response = await client.get("/v1/cart", headers=headers)
    assert response.status_code == 200
    assert response.json() == {"items": [], "total": {"amount": 0, "currency": "USD"}}


async def test_putting_and_removing_cart_items(runtime: Runtime, client: httpx.AsyncClient) -> None:
    boss, headers = await admin(runtime, client), await customer(client)
    engine, loom = await product(client, boss, 1999), await product(client, boss, 500)
    await client.put(f"/v1/cart/items/{engine}", json={"quantity": 1}, headers=headers)
    put = await client.put(f"/v1/cart/items/{loom}", json={"quantity": 3}, headers=headers)
    assert put.status_code == 200
    assert put.json() == {
        "items": [
            {
                "product_id": engine,
                "quantity": 1,
                "unit_price": {"amount": 1999, "currency": "USD"},
            },
            {"product_id": loom, "quantity": 3, "unit_price": {"amount": 500, "currency": "USD"}},
        ],
        "total": {"amount": 3499, "currency": "USD"},
    }
    removed = await client.delete(f"/v1/cart/items/{engine}", headers=headers)
    assert removed.status_code == 200
    assert [item["product_id"] for item in removed.json()["items"]] == [loom]
    assert removed.json()["total"] == {"amount": 1500, "currency": "USD"}
    assert (await client.get("/v1/cart", headers=headers)).json() == removed.json()


async def test_cart_errors(runtime: Runtime, client: httpx.AsyncClient) -> None:
    boss, headers = await admin(runtime, client), await customer(client)
    engine = await product(client, boss)
    unknown = await client.put("/v1/cart/items/nope", json={"quantity": 1}, headers=headers)
    assert unknown.status_code == 404
    for quantity in (0, 101, "two"):
        invalid = await client.put(
            f"/v1/cart/items/{engine}", json={"quantity": quantity}, headers=headers
        )
        assert invalid.status_code == 422, quantity
        assert invalid.json()["errors"][0]["loc"] == ["body", "quantity"]


async def test_placing_an_order(runtime: Runtime, client: httpx.AsyncClient) -> None:
    boss, headers = await admin(runtime, client), await customer(client)
    engine = await product(client, boss, 1999)
    items = [{"product_id": engine, "quantity": 2}, {"product_id": engine, "quantity": 1}]
    response = await client.post("/v1/orders", json=order_body(items), headers=keyed(headers))
    assert response.status_code == 202, response.text
    assert "idempotent-replayed" not in response.headers
    order = response.json()
    assert order["status"] == "pending" and order["cancel_reason"] is None
    assert order["payment_id"] is None
    assert order["items"] == [
        {"product_id": engine, "quantity": 3, "unit_price": {"amount": 1999, "currency": "USD"}}
    ]
    assert order["total"] == {"amount": 5997, "currency": "USD"}
    assert order["created_at"].endswith("Z") and order["updated_at"] >= order["created_at"]
    found = await client.get(f"/v1/orders/{order['id']}", headers=headers)
    assert found.status_code == 200 and found.json()["id"] == order["id"]


async def test_ordering_the_cart_empties_it(runtime: Runtime, client: httpx.AsyncClient) -> None:
    boss, headers = await admin(runtime, client), await customer(client)
    engine = await product(client, boss, 1999)
    empty = await client.post("/v1/orders", json=order_body(), headers=keyed(headers))
    assert empty.status_code == 422
    await client.put(f"/v1/cart/items/{engine}", json={"quantity": 2}, headers=headers)
    response = await client.post("/v1/orders", json=order_body(), headers=keyed(headers))
    assert response.status_code == 202, response.text
    assert response.json()["total"] == {"amount": 3998, "currency": "USD"}
    assert (await client.get("/v1/cart", headers=headers)).json()["items"] == []


async def test_placing_an_order_needs_an_idempotency_key(client: httpx.AsyncClient) -> None:
    headers = await customer(client)
    response = await client.post("/v1/orders", json=order_body(), headers=headers)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["detail"]
    too_long = await client.post("/v1/orders", json=order_body(), headers=keyed(headers, "k" * 256))
    assert too_long.status_code == 400


async def test_invalid_orders_are_422(runtime: Runtime, client: httpx.AsyncClient) -> None:
    boss, headers = await admin(runtime, client), await customer(client)
    engine = await product(client, boss)
    line = {"product_id": engine, "quantity": 1}
    cases = {
        "country": order_body([line], shipping_address={**ADDRESS, "country": "gbr"}),
        "payment_method": order_body([line], payment_method=""),
        "quantity": order_body([{"product_id": engine, "quantity": 101}]),
        "items": order_body([]),
        "shipping_address": {"payment_method": "pm_card_visa", "items": [line]},
    }
    for field, body in cases.items():
        response = await client.post("/v1/orders", json=body, headers=keyed(headers))
        assert response.status_code == 422, (field, response.text)
        assert field in json.dumps(response.json()["errors"]), field
    unknown = await client.post(
        "/v1/orders",
        json=order_body([line, {"product_id": "nope", "quantity": 1}]),
        headers=keyed(headers),
    )
    assert unknown.status_code == 422
    assert unknown.json()["errors"] == [
        {"loc": ["body", "items", 1, "product_id"], "msg": "no such product"}
    ]
    assert (await client.get("/v1/orders", headers=headers)).json()["items"] == []


async def test_a_replayed_key_returns_the_first_response(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    boss, headers = await admin(runtime, client), await customer(client)
    engine = await product(client, boss)
    body = order_body([{"product_id": engine, "quantity": 1}])
    first = await client.post("/v1/orders", json=body, headers=keyed(headers, "k1"))
    again = await client.post("/v1/orders", json=body, headers=keyed(headers, "k1"))
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    other_body = order_body([{"product_id": engine, "quantity": 2}])
    reused = await client.post("/v1/orders", json=other_body, headers=keyed(headers, "k1"))
    assert reused.status_code == 422
    listed = (await client.get("/v1/orders", headers=headers)).json()["items"]
    assert [order["id"] for order in listed] == [first.json()["id"]]
    # keys belong to their customer: another one's same key is a new order
    stranger = await customer(client, "eve@example.com")
    theirs = await client.post("/v1/orders", json=body, headers=keyed(stranger, "k1"))
    assert theirs.status_code == 202 and theirs.json()["id"] != first.json()["id"]


async def test_a_key_still_in_flight_is_409(runtime: Runtime, client: httpx.AsyncClient) -> None:
    boss, headers = await admin(runtime, client), await customer(client)
    me = (await client.get("/v1/users/me", headers=headers)).json()["id"]
    engine = await product(client, boss)
    raw = json.dumps(order_body([{"product_id": engine, "quantity": 1}])).encode()
    # another instance has claimed the key and not answered yet
    async with runtime.platform.orders.for_customer(me).write() as session:
        await insert_ignoring_duplicates(
            session,
            idempotency_record,
            scope=f"orders:{me}",
            key="busy",
            fingerprint=idempotency.fingerprint("POST", "/v1/orders", raw),
            created_at=utcnow(),
        )
    response = await client.post(
        "/v1/orders",
        content=raw,
        headers={**keyed(headers, "busy"), "Content-Type": "application/json"},
    )
    assert response.status_code == 409


async def test_two_concurrent_requests_with_one_key_place_one_order(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    boss, headers = await admin(runtime, client), await customer(client)
    engine = await product(client, boss)
    body = order_body([{"product_id": engine, "quantity": 1}])
    responses = await asyncio.gather(
        *(client.post("/v1/orders", json=body, headers=keyed(headers, "same")) for _ in range(2))
    )
    fresh = [
        r for r in responses if r.status_code == 202 and "idempotent-replayed" not in r.headers
    ]
    assert len(fresh) == 1
    for other in responses:
        assert other.status_code == 409 or other.content == fresh[0].content
    assert len((await client.get("/v1/orders", headers=headers)).json()["items"]) == 1


async def test_listing_orders_newest_first_in_pages(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    boss, headers = await admin(runtime, client), await customer(client)
    engine = await product(client, boss)
    placed = []
    for quantity in (1, 2, 3):
        body = order_body([{"product_id": engine, "quantity": quantity}])
        placed.append((await client.post("/v1/orders", json=body, headers=keyed(headers))).json())
    first = (await client.get("/v1/orders?limit=2", headers=headers)).json()
    assert [o["id"] for o in first["items"]] == [placed[2]["id"], placed[1]["id"]]
    rest = await client.get(f"/v1/orders?limit=2&cursor={first['next_cursor']}", headers=headers)
    assert [o["id"] for o in rest.json()["items"]] == [placed[0]["id"]]
    assert rest.json()["next_cursor"] is None
    bad = await client.get("/v1/orders?cursor=bm9wZQ", headers=headers)
    assert bad.status_code == 422
    assert (await client.get("/v1/orders?limit=0", headers=headers)).status_code == 422


async def test_an_order_is_seen_by_its_owner_and_admins_only(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    boss, headers = await admin(runtime, client), await customer(client)
    engine = await product(client, boss)
    body = order_body([{"product_id": engine, "quantity": 1}])
    order = (await client.post("/v1/orders", json=body, headers=keyed(headers))).json()
    stranger = await customer(client, "eve@example.com")
    hidden = await client.get(f"/v1/orders/{order['id']}", headers=stranger)
    assert hidden.status_code == 404
    assert (await client.get(f"/v1/orders/{order['id']}", headers=boss)).status_code == 200
    for unknown in ("nope", "0" * 36, str(uuid.uuid4())):
        assert (await client.get(f"/v1/orders/{unknown}", headers=headers)).status_code == 404


async def test_cancelling_an_order(runtime: Runtime, client: httpx.AsyncClient) -> None:
    boss, headers = await admin(runtime, client), await customer(client)
    engine = await product(client, boss)
    body = order_body([{"product_id": engine, "quantity": 1}])
    order = (await client.post("/v1/orders", json=body, headers=keyed(headers))).json()
    stranger = await customer(client, "eve@example.com")
    refused = await client.post(f"/v1/orders/{order['id']}/cancel", headers=stranger)
    assert refused.status_code == 404
    cancelled = await client.post(f"/v1/orders/{order['id']}/cancel", headers=headers)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["cancel_reason"] == "customer_cancelled"
    again = await client.post(f"/v1/orders/{order['id']}/cancel", headers=boss)
    assert again.status_code == 409
    missing = await client.post("/v1/orders/nope/cancel", headers=headers)
    assert missing.status_code == 404


async def test_the_catalog_decides_what_is_sold_and_at_what_price(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    boss, headers = await admin(runtime, client), await customer(client)
    engine, loom = await product(client, boss, 1999), await product(client, boss, 500)
    for product_id in (engine, loom):
        await client.put(f"/v1/cart/items/{product_id}", json={"quantity": 1}, headers=headers)
    changed = await client.patch(
        f"/v1/products/{engine}", json={"price": {"amount": 2500, "currency": "USD"}}, headers=boss
    )
    assert changed.status_code == 200, changed.text
    assert (await client.delete(f"/v1/products/{loom}", headers=boss)).status_code == 204
    cart = (await client.get("/v1/cart", headers=headers)).json()
    assert cart["items"] == [
        {"product_id": engine, "quantity": 1, "unit_price": {"amount": 2500, "currency": "USD"}}
    ]
    gone = await client.put(f"/v1/cart/items/{loom}", json={"quantity": 1}, headers=headers)
    assert gone.status_code == 404
    body = order_body([{"product_id": loom, "quantity": 1}])
    refused = await client.post("/v1/orders", json=body, headers=keyed(headers))
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["loc"] == ["body", "items", 0, "product_id"]


async def test_openapi_requires_the_idempotency_key_to_place_an_order(
    client: httpx.AsyncClient,
) -> None:
    operation = (await client.get("/openapi.json")).json()["paths"]["/v1/orders"]["post"]
    (key,) = [p for p in operation["parameters"] if p["name"] == "Idempotency-Key"]
    assert key["in"] == "header" and key["required"] is True
    assert {"400", "409", "422"} <= operation["responses"].keys()
