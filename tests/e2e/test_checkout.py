"""The whole checkout saga over HTTP, on the embedded runtime: every service, real SQLite
files, the in-process bus."""

import asyncio

import httpx

from bazaar.payments.sandbox import SandboxProvider
from bazaar.payments.wiring import provider_for
from bazaar.platform.money import Money
from bazaar.runtime.embedded import Runtime
from tests.e2e.checkout import create_product, eventually, place_order, settled, stock_of
from tests.plugin import admin as make_admin
from tests.plugin import customer


async def test_happy_path_confirms_charges_notifies(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    admin = await make_admin(runtime, client)
    ada = await customer(client)
    product = await create_product(client, admin, stock=5, amount=2500)

    put = await client.put(f"/v1/cart/items/{product['id']}", json={"quantity": 2}, headers=ada)
    assert put.status_code == 200
    assert put.json()["total"] == {"amount": 5000, "currency": "USD"}

    placed = await place_order(client, ada, items=None)
    assert placed.status_code == 202, placed.text
    assert placed.json()["status"] == "pending"
    assert (await client.get("/v1/cart", headers=ada)).json()["items"] == []

    order = await settled(client, ada, placed.json()["id"])
    assert order["status"] == "confirmed" and order["cancel_reason"] is None
    assert order["total"] == {"amount": 5000, "currency": "USD"}
    assert await stock_of(client, product["id"]) == 3

    payment = await client.get(f"/v1/payments/{order['payment_id']}", headers=ada)
    assert payment.status_code == 200
    assert payment.json()["status"] == "succeeded"
    assert payment.json()["amount"] == {"amount": 5000, "currency": "USD"}

    async def notified() -> list:
        response = await client.get("/v1/notifications", headers=ada)
        return response.json()["items"]

    notifications = await eventually(notified)
    assert len(notifications) == 1 and order["id"] in notifications[0]["body"]

    mail_dir = runtime.settings.platform.data_dir / "mail"

    async def mailed() -> list:
        return list(mail_dir.glob("*.eml")) if mail_dir.exists() else []

    emails = await eventually(mailed)
    assert len(emails) == 1
    assert "ada@example.com" in emails[0].read_text()

    listed = await client.get("/v1/orders", headers=ada)
    assert [o["id"] for o in listed.json()["items"]] == [order["id"]]


async def test_declined_card_cancels_and_returns_the_stock(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    admin = await make_admin(runtime, client)
    ada = await customer(client)
    product = await create_product(client, admin, stock=4)
    for method in ("pm_card_declined", "pm_card_insufficient_funds"):
        placed = await place_order(
            client, ada, [{"product_id": product["id"], "quantity": 3}], method
        )
        order = await settled(client, ada, placed.json()["id"])
        assert order["status"] == "cancelled"
        assert order["cancel_reason"] == "payment_declined"
        await eventually(lambda: _stock_is(client, product["id"], 4))


async def _stock_is(client: httpx.AsyncClient, product_id: str, expected: int) -> bool:
    return await stock_of(client, product_id) == expected


async def test_out_of_stock_cancels_without_charging(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    admin = await make_admin(runtime, client)
    ada = await customer(client)
    product = await create_product(client, admin, stock=1)
    placed = await place_order(client, ada, [{"product_id": product["id"], "quantity": 2}])
    order = await settled(client, ada, placed.json()["id"])
    assert order["status"] == "cancelled" and order["cancel_reason"] == "out_of_stock"
    assert order["payment_id"] is None
    assert await stock_of(client, product["id"]) == 1


async def test_last_units_go_to_exactly_as_many_orders(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    admin = await make_admin(runtime, client)
    product = await create_product(client, admin, stock=3)
    buyers = [await customer(client, f"buyer{n}@example.com") for n in range(12)]
    responses = await asyncio.gather(
        *(
            place_order(client, buyer, [{"product_id": product["id"], "quantity": 1}])
            for buyer in buyers
        )
    )
    assert all(response.status_code == 202 for response in responses)
    orders = await asyncio.gather(
        *(
            settled(client, buyer, response.json()["id"])
            for buyer, response in zip(buyers, responses, strict=True)
        )
    )
    statuses = sorted(order["status"] for order in orders)
    assert statuses.count("confirmed") == 3
    assert statuses.count("cancelled") == 9
    assert {o["cancel_reason"] for o in orders if o["status"] == "cancelled"} == {"out_of_stock"}
    assert await stock_of(client, product["id"]) == 0


async def test_customer_cancel_refunds_and_returns_stock(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    admin = await make_admin(runtime, client)
    ada = await customer(client)
    product = await create_product(client, admin, stock=2, amount=1000)
    placed = await place_order(client, ada, [{"product_id": product["id"], "quantity": 2}])
    order = await settled(client, ada, placed.json()["id"])
    assert order["status"] == "confirmed"
    assert await stock_of(client, product["id"]) == 0

    cancelled = await client.post(f"/v1/orders/{order['id']}/cancel", headers=ada)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["cancel_reason"] == "customer_cancelled"

    async def refunded() -> dict | None:
        payment = (await client.get(f"/v1/payments/{order['payment_id']}", headers=ada)).json()
        return payment if payment["status"] == "refunded" else None

    payment = await eventually(refunded)
    assert payment["refunded_amount"] == {"amount": 2000, "currency": "USD"}
    await eventually(lambda: _stock_is(client, product["id"], 2))
    again = await client.post(f"/v1/orders/{order['id']}/cancel", headers=ada)
    assert again.status_code == 409


async def test_idempotent_replay_and_key_reuse(runtime: Runtime, client: httpx.AsyncClient) -> None:
    admin = await make_admin(runtime, client)
    ada = await customer(client)
    product = await create_product(client, admin, stock=10)
    items = [{"product_id": product["id"], "quantity": 1}]
    first = await place_order(client, ada, items, key="checkout-1")
    replay = await place_order(client, ada, items, key="checkout-1")
    assert first.status_code == replay.status_code == 202
    assert replay.json() == first.json()
    assert replay.headers["idempotent-replayed"] == "true"
    other_body = await place_order(client, ada, items, "pm_card_declined", key="checkout-1")
    assert other_body.status_code == 422
    await settled(client, ada, first.json()["id"])
    listed = (await client.get("/v1/orders", headers=ada)).json()["items"]
    assert len(listed) == 1
    # the key is the customer's own: another customer may use the same string
    bob = await customer(client, "bob@example.com")
    assert (await place_order(client, bob, items, key="checkout-1")).status_code == 202


async def test_another_customers_order_is_not_found(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    admin = await make_admin(runtime, client)
    ada = await customer(client)
    bob = await customer(client, "bob@example.com")
    product = await create_product(client, admin, stock=10)
    placed = await place_order(client, ada, [{"product_id": product["id"], "quantity": 1}])
    order = await settled(client, ada, placed.json()["id"])
    assert (await client.get(f"/v1/orders/{order['id']}", headers=bob)).status_code == 404
    assert (await client.post(f"/v1/orders/{order['id']}/cancel", headers=bob)).status_code == 404
    payment = await client.get(f"/v1/payments/{order['payment_id']}", headers=bob)
    assert payment.status_code == 404
    assert (await client.get(f"/v1/orders/{order['id']}", headers=admin)).status_code == 200


async def test_flaky_provider_charges_exactly_once(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    admin = await make_admin(runtime, client)
    ada = await customer(client)
    product = await create_product(client, admin, stock=5, amount=700)
    placed = await place_order(
        client, ada, [{"product_id": product["id"], "quantity": 1}], "pm_card_flaky"
    )
    order = await settled(client, ada, placed.json()["id"])
    assert order["status"] == "confirmed"
    # the provider's own records, as its dashboard would show them
    payments_db = runtime.platform.databases["payments"]
    data_dir = runtime.settings.platform.data_dir
    provider = provider_for(runtime.settings.payments, data_dir, payments_db)
    assert isinstance(provider, SandboxProvider)
    try:
        charges = await provider.charges()
    finally:
        await provider.close()
    assert list(charges) == [order["id"]]
    assert charges[order["id"]].outcome == "succeeded"
    assert charges[order["id"]].amount == Money(700, "USD")
    payment = (await client.get(f"/v1/payments/{order['payment_id']}", headers=ada)).json()
    assert payment["status"] == "succeeded"
