"""Notifications over HTTP: the caller's notifications and the admin's webhooks."""

import asyncio
import ipaddress
from pathlib import Path

import httpx
import pytest

from bazaar.notifications import service, webhook_targets
from bazaar.notifications.models import Recipient
from bazaar.orders.events import OrderConfirmed
from bazaar.platform.money import Money
from bazaar.runtime.embedded import Runtime
from tests.plugin import admin, customer, started


@pytest.fixture
def public_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every name resolves to a public address (the test machine has no DNS)."""

    async def resolve(host: str, port: int) -> list[webhook_targets.IPAddress]:
        return [ipaddress.ip_address("93.184.215.14")]

    monkeypatch.setattr(webhook_targets, "resolve", resolve)


async def user_id(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    return (await client.get("/v1/users/me", headers=headers)).json()["id"]


async def confirm_order(runtime: Runtime, customer_id: str, order_id: str) -> None:
    """Notify as `order.confirmed` would, once `user.registered` has reached notifications."""
    db = runtime.platform.databases["notifications"]
    for _ in range(200):
        async with db.read() as session:
            if await session.get(Recipient, customer_id):
                break
        await asyncio.sleep(0.01)
    event = OrderConfirmed(
        order_id=order_id, customer_id=customer_id, total=Money(1999, "USD"), payment_id="pay"
    )
    async with db.write() as session:
        await service.notify_order_confirmed(session, event)


async def test_notifications_are_listed_newest_first_with_a_cursor(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    headers = await customer(client)
    ada = await user_id(client, headers)
    for order_id in ("order-a", "order-b", "order-c"):
        await confirm_order(runtime, ada, order_id)
    first = await client.get("/v1/notifications?limit=2", headers=headers)
    assert first.status_code == 200
    page = first.json()
    assert [n["subject"] for n in page["items"]] == [
        "Your order order-c is confirmed",
        "Your order order-b is confirmed",
    ]
    item = page["items"][0]
    assert set(item) == {"id", "kind", "subject", "body", "created_at", "read"}
    assert item["kind"] == "order_confirmed" and item["read"] is False
    assert "19.99 USD" in item["body"]
    rest = await client.get(
        "/v1/notifications", params={"limit": 2, "cursor": page["next_cursor"]}, headers=headers
    )
    assert [n["subject"] for n in rest.json()["items"]] == ["Your order order-a is confirmed"]
    assert rest.json()["next_cursor"] is None
    others = await customer(client, "bo@example.com")
    assert (await client.get("/v1/notifications", headers=others)).json()["items"] == []


async def test_the_confirmation_email_is_written_to_the_mail_folder(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    headers = await customer(client)
    await confirm_order(runtime, await user_id(client, headers), "order-mail")
    mail = Path(runtime.settings.platform.data_dir) / "mail"
    for _ in range(200):
        if mail.exists() and list(mail.glob("*.eml")):
            break
        await asyncio.sleep(0.01)
    [eml] = list(mail.glob("*.eml"))
    assert b"Subject: Your order order-mail is confirmed" in eml.read_bytes()


async def test_marking_a_notification_read(runtime: Runtime, client: httpx.AsyncClient) -> None:
    headers = await customer(client)
    await confirm_order(runtime, await user_id(client, headers), "order-r")
    [item] = (await client.get("/v1/notifications", headers=headers)).json()["items"]
    read = await client.post(f"/v1/notifications/{item['id']}/read", headers=headers)
    assert read.status_code == 200 and read.json()["read"] is True
    again = await client.post(f"/v1/notifications/{item['id']}/read", headers=headers)
    assert again.status_code == 200 and again.json()["read"] is True
    others = await customer(client, "bo@example.com")
    stranger = await client.post(f"/v1/notifications/{item['id']}/read", headers=others)
    assert stranger.status_code == 404


async def test_notifications_need_a_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/notifications")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    bad = await client.get("/v1/notifications", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401


async def test_a_bad_cursor_or_limit_is_422(client: httpx.AsyncClient) -> None:
    headers = await customer(client)
    bad_cursor = await client.get("/v1/notifications?cursor=%%%", headers=headers)
    assert bad_cursor.status_code == 422
    bad_limit = await client.get("/v1/notifications?limit=0", headers=headers)
    assert bad_limit.status_code in (400, 422)


async def test_an_admin_creates_lists_and_deletes_webhooks(
    runtime: Runtime, client: httpx.AsyncClient, public_dns: None
) -> None:
    headers = await admin(runtime, client)
    created = await client.post(
        "/v1/webhooks",
        json={"url": "https://hooks.example.com/bazaar", "events": ["order.confirmed"]},
        headers=headers,
    )
    assert created.status_code == 201
    hook = created.json()
    assert hook["url"] == "https://hooks.example.com/bazaar"
    assert hook["events"] == ["order.confirmed"] and hook["secret"].startswith("whsec_")
    listed = await client.get("/v1/webhooks", headers=headers)
    assert listed.status_code == 200
    [item] = listed.json()["items"]
    assert item["id"] == hook["id"] and "secret" not in item
    deleted = await client.delete(f"/v1/webhooks/{hook['id']}", headers=headers)
    assert deleted.status_code == 204
    assert (await client.get("/v1/webhooks", headers=headers)).json()["items"] == []
    again = await client.delete(f"/v1/webhooks/{hook['id']}", headers=headers)
    assert again.status_code == 404


async def test_a_customer_may_not_manage_webhooks(client: httpx.AsyncClient) -> None:
    headers = await customer(client)
    body = {"url": "https://hooks.example.com/", "events": ["order.placed"]}
    assert (await client.post("/v1/webhooks", json=body, headers=headers)).status_code == 403
    assert (await client.get("/v1/webhooks", headers=headers)).status_code == 403
    assert (await client.delete("/v1/webhooks/x", headers=headers)).status_code == 403


async def test_webhooks_need_a_token(client: httpx.AsyncClient) -> None:
    body = {"url": "https://hooks.example.com/", "events": ["order.placed"]}
    assert (await client.post("/v1/webhooks", json=body)).status_code == 401
    assert (await client.get("/v1/webhooks")).status_code == 401


async def test_an_invalid_webhook_is_422(runtime: Runtime, client: httpx.AsyncClient) -> None:
    headers = await admin(runtime, client)
    cases = [
        ({"url": "ftp://hooks.example.com/", "events": ["order.placed"]}, "url"),
        ({"url": "not a url", "events": ["order.placed"]}, "url"),
        ({"url": "https://hooks.example.com/", "events": ["order.shipped"]}, "events"),
        ({"url": "https://hooks.example.com/", "events": []}, "events"),
        ({"url": "https://hooks.example.com/"}, "events"),
    ]
    for body, field in cases:
        response = await client.post("/v1/webhooks", json=body, headers=headers)
        assert response.status_code == 422, (body, response.text)
        problem = response.json()
        [error] = problem["errors"]
        assert field in error["loc"] or field in error["msg"], problem


async def test_a_webhook_at_a_private_address_is_422_naming_the_url(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    headers = await admin(runtime, client)
    for url in ("http://127.0.0.1:8000/hooks", "http://localhost/", "http://169.254.169.254/"):
        response = await client.post(
            "/v1/webhooks", json={"url": url, "events": ["order.placed"]}, headers=headers
        )
        assert response.status_code == 422, (url, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        [error] = response.json()["errors"]
        assert error["loc"] == ["body", "url"], error
        assert "loopback" in error["msg"] or "metadata" in error["msg"], error
    assert (await client.get("/v1/webhooks", headers=headers)).json()["items"] == []


async def test_the_operator_may_allow_a_webhook_at_a_loopback_address(tmp_path: Path) -> None:
    async with started(tmp_path / "data", BAZAAR_WEBHOOK_ALLOW_PRIVATE="true") as runtime:
        transport = httpx.ASGITransport(app=runtime.app())
        async with httpx.AsyncClient(transport=transport, base_url="http://bazaar.test") as client:
            headers = await admin(runtime, client)
            body = {"url": "http://127.0.0.1:8000/hooks", "events": ["order.placed"]}
            created = await client.post("/v1/webhooks", json=body, headers=headers)
            assert created.status_code == 201, created.text
            metadata = {"url": "http://169.254.169.254/latest", "events": ["order.placed"]}
            refused = await client.post("/v1/webhooks", json=metadata, headers=headers)
            assert refused.status_code == 422
