"""Webhooks against a real HTTP server on a loopback port: signed, retried, delivered once."""

import asyncio
import contextlib
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import get_args

import pytest
from sqlalchemy import select

from bazaar.notifications import handlers, webhooks
from bazaar.notifications.models import CANCELLED, DELIVERED, FAILED, PENDING, WebhookDelivery
from bazaar.notifications.schemas import WebhookEvent
from bazaar.notifications.settings import NotificationsSettings
from bazaar.notifications.webhook_sender import WebhookSender
from bazaar.orders.events import OrderCancelled, OrderConfirmed
from bazaar.payments.events import PaymentRefunded
from bazaar.platform.bus import RetryPolicy, deliver
from bazaar.platform.db import Database
from bazaar.platform.errors import NotFound, Unprocessable
from bazaar.platform.events import Envelope, Event
from bazaar.platform.money import Money
from bazaar.platform.settings import Env
from tests.notifications.conftest import FAST

CONFIRMED = OrderConfirmed(
    order_id="order-1", customer_id="user-1", total=Money(2500, "USD"), payment_id="pay-1"
)


@dataclass
class Receiver:
    """A tiny HTTP/1.1 server: answers each request with the next status of `statuses`."""

    statuses: list[int]
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")[1:]
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines if line)
        }
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append((headers, body))
        status = self.statuses.pop(0) if self.statuses else 200
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".encode()
        )
        await writer.drain()
        writer.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver(statuses=[500])
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
    receiver.port = server.sockets[0].getsockname()[1]
    async with server:
        yield receiver


async def publish(db: Database, event: Event, envelope: Envelope | None = None) -> Envelope:
    """Hand an event to notifications' webhook consumer, as the bus would."""
    envelope = envelope or Envelope.wrap(event)
    subscription = next(
        s
        for s in handlers.subscriptions(db)
        if s.consumer == handlers.WEBHOOK_CONSUMER and s.event_type == envelope.type
    )
    assert await deliver(subscription, envelope, RetryPolicy(attempts=1)) is True
    return envelope


async def deliveries(db: Database) -> list[WebhookDelivery]:
    async with db.read() as session:
        return list(await session.scalars(select(WebhookDelivery)))


async def test_a_delivery_is_signed_retried_and_sent_once_acknowledged(
    db: Database, settings: NotificationsSettings, receiver: Receiver
) -> None:
    async with db.write() as session:
        hook = await webhooks.create_webhook(session, receiver.url, ["order.confirmed"])
    assert hook.secret.startswith("whsec_")
    envelope = await publish(db, CONFIRMED)
    await publish(db, CONFIRMED, envelope)  # re-delivered: still one delivery
    sender = WebhookSender(db, settings)
    async with sender.client() as client:
        assert await sender.send_due(client) == 1  # answered 500
        [failed_once] = await deliveries(db)
        assert (failed_once.status, failed_once.attempts) == (PENDING, 1)
        assert failed_once.last_status_code == 500
        await asyncio.sleep(0.03)  # the first retry waits 0.01 s
        assert await sender.send_due(client) == 1  # answered 200
        await asyncio.sleep(0.03)
        assert await sender.send_due(client) == 0
    [delivered] = await deliveries(db)
    assert (delivered.status, delivered.attempts) == (DELIVERED, 2)
    assert len(receiver.requests) == 2
    first, second = receiver.requests
    assert first[1] == second[1]
    headers, body = second
    expected = hmac.new(hook.secret.encode(), body, hashlib.sha256).hexdigest()
    assert headers["bazaar-signature"] == f"sha256={expected}"
    assert headers["content-type"] == "application/json"
    assert headers["bazaar-event-id"] == envelope.id
    assert headers["bazaar-event-type"] == "order.confirmed"
    payload = json.loads(body)
    assert payload["id"] == envelope.id and payload["type"] == "order.confirmed"
    assert payload["data"]["order_id"] == "order-1"
    assert payload["data"]["total"] == {"amount": 2500, "currency": "USD"}
    assert payload["occurred_at"].endswith("Z") or "+00:00" in payload["occurred_at"]


async def test_only_subscribed_live_webhooks_get_a_delivery(
    db: Database, receiver: Receiver
) -> None:
    async with db.write() as session:
        confirmed = await webhooks.create_webhook(session, receiver.url, ["order.confirmed"])
        refunds = await webhooks.create_webhook(
            session, receiver.url, ["payment.refunded", "payment.refunded"]
        )
        gone = await webhooks.create_webhook(session, receiver.url, ["order.cancelled"])
    assert refunds.events == ["payment.refunded"]
    async with db.write() as session:
        await webhooks.delete_webhook(session, gone.id)
    await publish(db, CONFIRMED)
    await publish(
        db,
        OrderCancelled(order_id="o", customer_id="u", reason="out_of_stock", total=Money(1, "USD")),
    )
    await publish(
        db,
        PaymentRefunded(
            payment_id="p",
            order_id="o",
            customer_id="u",
            amount=Money(1, "USD"),
            refunded_total=Money(1, "USD"),
        ),
    )
    by_webhook = {(d.webhook_id, d.event_type) for d in await deliveries(db)}
    assert by_webhook == {(confirmed.id, "order.confirmed"), (refunds.id, "payment.refunded")}


async def test_a_delivery_that_keeps_failing_is_given_up(
    db: Database, settings: NotificationsSettings, receiver: Receiver
) -> None:
    receiver.statuses = [500, 503, 404]
    async with db.write() as session:
        await webhooks.create_webhook(session, receiver.url, ["order.confirmed"])
    await publish(db, CONFIRMED)
    sender = WebhookSender(db, settings)
    async with sender.client() as client:
        for _ in range(settings.webhook_attempts):
            assert await sender.send_due(client) == 1
            await asyncio.sleep(0.05)
        assert await sender.send_due(client) == 0
    [delivery] = await deliveries(db)
    assert (delivery.status, delivery.attempts) == (FAILED, 3)
    assert len(receiver.requests) == 3


async def test_an_unreachable_webhook_is_retried(
    db: Database, settings: NotificationsSettings
) -> None:
    server = await asyncio.start_server(lambda _r, _w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    async with db.write() as session:
        await webhooks.create_webhook(session, f"http://127.0.0.1:{port}/", ["order.confirmed"])
    await publish(db, CONFIRMED)
    sender = WebhookSender(db, settings)
    async with sender.client() as client:
        assert await sender.send_due(client) == 1
    [delivery] = await deliveries(db)
    assert (delivery.status, delivery.attempts) == (PENDING, 1)
    assert delivery.last_status_code is None and "ConnectError" in (delivery.last_error or "")


async def test_the_running_sender_delivers_after_the_commit(
    db: Database, receiver: Receiver
) -> None:
    receiver.statuses = []
    slow = NotificationsSettings.from_env(Env({**FAST, "BAZAAR_WEBHOOK_POLL_INTERVAL": "30"}))
    sender = WebhookSender(db, slow)
    task = asyncio.create_task(sender.run())
    try:
        await asyncio.sleep(0.05)
        async with db.write() as session:
            await webhooks.create_webhook(session, receiver.url, ["order.confirmed"])
        await publish(db, CONFIRMED)
        for _ in range(100):
            if (await deliveries(db))[0].status == DELIVERED:
                break
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert (await deliveries(db))[0].status == DELIVERED
    assert len(receiver.requests) == 1


async def test_deleting_a_webhook_cancels_its_pending_deliveries(db: Database) -> None:
    async with db.write() as session:
        hook = await webhooks.create_webhook(session, "https://example.com/h", ["order.confirmed"])
    await publish(db, CONFIRMED)
    async with db.write() as session:
        await webhooks.delete_webhook(session, hook.id)
    assert [d.status for d in await deliveries(db)] == [CANCELLED]
    async with db.write() as session:
        with pytest.raises(NotFound):
            await webhooks.delete_webhook(session, hook.id)


@pytest.mark.parametrize(
    "url", ["ftp://example.com/x", "example.com/hook", "http://", "http://exa mple.com/", ""]
)
def test_a_webhook_url_must_be_absolute_http(url: str) -> None:
    with pytest.raises(Unprocessable):
        webhooks.check_url(url)


def test_the_accepted_event_names_are_the_ones_fanned_out() -> None:
    assert set(get_args(WebhookEvent)) == set(handlers.WEBHOOK_EVENTS)
