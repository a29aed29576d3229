"""Payments over HTTP: showing a payment to its owner, admin refunds and their idempotency."""

import httpx
from sqlalchemy import select

from bazaar.catalog.events import ReservedLine, StockReserved
from bazaar.payments.models import Payment
from bazaar.platform.bus import RetryPolicy, deliver
from bazaar.platform.events import Envelope
from bazaar.platform.ids import new_id
from bazaar.platform.money import Money
from bazaar.runtime.embedded import Runtime
from tests.plugin import admin, login, register

USD_2500 = {"amount": 2500, "currency": "USD"}


async def paid_order(runtime: Runtime, customer_id: str, method: str = "pm_card_visa") -> str:
    """Deliver a stock.reserved for a new order to payments' handler; the payment's id."""
    part = next(p for p in runtime.parts if p.name == "payments")
    handler = next(s for s in part.subscriptions if s.consumer == "payments.capture_payment")
    order_id = new_id()
    event = StockReserved(
        order_id=order_id,
        customer_id=customer_id,
        total=Money(2500, "USD"),
        payment_method=method,
        lines=[ReservedLine("product-1", 1)],
    )
    assert await deliver(handler, Envelope.wrap(event), RetryPolicy(attempts=1))
    async with runtime.platform.databases["payments"].read() as session:
        return await session.scalar(select(Payment.id).where(Payment.order_id == order_id))


async def ada(client: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    user = await register(client, "ada@example.com")
    tokens = await login(client, "ada@example.com")
    return user["id"], {"Authorization": f"Bearer {tokens['access_token']}"}


def keyed(headers: dict[str, str], key: str) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key}


async def test_customer_sees_their_payment(client: httpx.AsyncClient, runtime: Runtime) -> None:
    customer_id, headers = await ada(client)
    payment_id = await paid_order(runtime, customer_id)
    response = await client.get(f"/v1/payments/{payment_id}", headers=headers)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"id", "order_id", "status", "amount", "refunded_amount", "created_at"}
    assert body["id"] == payment_id and body["status"] == "succeeded"
    assert body["amount"] == USD_2500
    assert body["refunded_amount"] == {"amount": 0, "currency": "USD"}
    assert body["created_at"].endswith(("Z", "+00:00"))


async def test_admin_sees_any_payment(client: httpx.AsyncClient, runtime: Runtime) -> None:
    customer_id, _ = await ada(client)
    payment_id = await paid_order(runtime, customer_id, "pm_card_declined")
    response = await client.get(f"/v1/payments/{payment_id}", headers=await admin(runtime, client))
    assert response.status_code == 200
    assert response.json()["status"] == "declined"


async def test_another_customers_payment_is_not_found(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    customer_id, _ = await ada(client)
    payment_id = await paid_order(runtime, customer_id)
    await register(client, "bob@example.com")
    bob = await login(client, "bob@example.com")
    headers = {"Authorization": f"Bearer {bob['access_token']}"}
    response = await client.get(f"/v1/payments/{payment_id}", headers=headers)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    unknown = await client.get(f"/v1/payments/{new_id()}", headers=headers)
    assert unknown.status_code == 404


async def test_payment_needs_a_token(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/v1/payments/{new_id()}")
    assert response.status_code == 401


async def test_admin_refunds_the_rest_with_an_empty_body(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    customer_id, _ = await ada(client)
    payment_id = await paid_order(runtime, customer_id)
    headers = keyed(await admin(runtime, client), "refund-all")
    response = await client.post(f"/v1/payments/{payment_id}/refund", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "refunded"
    assert response.json()["refunded_amount"] == USD_2500
    assert "idempotent-replayed" not in response.headers


async def test_partial_refund_replays_and_refuses_key_reuse(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    customer_id, _ = await ada(client)
    payment_id = await paid_order(runtime, customer_id)
    headers = keyed(await admin(runtime, client), "refund-part")
    body = {"amount": {"amount": 1000, "currency": "USD"}}
    url = f"/v1/payments/{payment_id}/refund"
    first = await client.post(url, json=body, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "succeeded"
    assert first.json()["refunded_amount"] == {"amount": 1000, "currency": "USD"}

    replay = await client.post(url, json=body, headers=headers)
    assert replay.status_code == 200
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == first.json()

    reused = await client.post(
        url, json={"amount": {"amount": 5, "currency": "USD"}}, headers=headers
    )
    assert reused.status_code == 422
    shown = await client.get(f"/v1/payments/{payment_id}", headers=headers)
    assert shown.json()["refunded_amount"] == {"amount": 1000, "currency": "USD"}


async def test_refund_by_a_customer_is_forbidden(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    customer_id, headers = await ada(client)
    payment_id = await paid_order(runtime, customer_id)
    response = await client.post(f"/v1/payments/{payment_id}/refund", headers=keyed(headers, "k"))
    assert response.status_code == 403
    # refused before its key is looked at: without one it is 403 too, not 400
    keyless = await client.post(f"/v1/payments/{payment_id}/refund", headers=headers)
    assert keyless.status_code == 403


async def test_refund_without_idempotency_key_is_bad_request(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    customer_id, _ = await ada(client)
    payment_id = await paid_order(runtime, customer_id)
    headers = await admin(runtime, client)
    response = await client.post(f"/v1/payments/{payment_id}/refund", headers=headers)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["detail"]


async def test_refund_beyond_what_is_left_is_unprocessable(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    customer_id, _ = await ada(client)
    payment_id = await paid_order(runtime, customer_id)
    headers = keyed(await admin(runtime, client), "too-much")
    body = {"amount": {"amount": 2501, "currency": "USD"}}
    response = await client.post(f"/v1/payments/{payment_id}/refund", json=body, headers=headers)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "amount", "amount"]


async def test_refund_of_a_declined_payment_is_a_conflict(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    customer_id, _ = await ada(client)
    payment_id = await paid_order(runtime, customer_id, "pm_card_declined")
    headers = keyed(await admin(runtime, client), "declined")
    response = await client.post(f"/v1/payments/{payment_id}/refund", json={}, headers=headers)
    assert response.status_code == 409


async def test_refund_of_an_unknown_payment_is_not_found(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    headers = keyed(await admin(runtime, client), "unknown")
    response = await client.post(f"/v1/payments/{new_id()}/refund", headers=headers)
    assert response.status_code == 404


async def test_openapi_requires_the_idempotency_key_to_refund(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    operation = paths["/v1/payments/{payment_id}/refund"]["post"]
    (key,) = [p for p in operation["parameters"] if p["name"] == "Idempotency-Key"]
    assert key["in"] == "header" and key["required"] is True
    assert {"400", "403", "404", "409", "422", "503"} <= operation["responses"].keys()
