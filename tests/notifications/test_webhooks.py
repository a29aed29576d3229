"""Webhooks against a real HTTP server on a loopback port: signed, retried, delivered once."""

import asyncio
import contextlib
import hashlib
import hmac
import json
from typing import get_args

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from bazaar.notifications import handlers, webhook_targets, webhooks
from bazaar.notifications.models import DeliveryStatus
from bazaar.notifications.schemas import WebhookEvent
from bazaar.notifications.settings import NotificationsSettings
from bazaar.notifications.webhook_sender import WebhookSender
from bazaar.orders.events import OrderCancelled
from bazaar.payments.events import PaymentRefunded
from bazaar.platform.db import Database
from bazaar.platform.errors import NotFound, Unprocessable
from bazaar.platform.job_worker import JobWorker
from bazaar.platform.money import Money
from bazaar.platform.schema import processed_event
from bazaar.platform.settings import Env
from tests.notifications.conftest import CONFIRMED, FAST, Receiver, deliveries, publish


async def test_a_delivery_is_signed_retried_and_sent_once_acknowledged(
    db: Database, settings: NotificationsSettings, receiver: Receiver
) -> None:
    async with db.write() as session:
        hook = await webhooks.create_webhook(session, receiver.url, ["order.confirmed"], settings)
    assert hook.secret.startswith("whsec_")
    envelope = await publish(db, CONFIRMED)
    await publish(db, CONFIRMED, envelope)  # re-delivered: still one delivery
    sender = WebhookSender(db, settings)
    worker = JobWorker(db, [sender])
    async with contextlib.aclosing(sender):
        assert await worker.run_due() == 1  # answered 500
        [failed_once] = await deliveries(db)
        assert (failed_once.status, failed_once.attempts) == (DeliveryStatus.PENDING, 1)
        assert failed_once.last_status_code == 500
        await asyncio.sleep(0.03)  # the first retry waits 0.01 s
        assert await worker.run_due() == 1  # answered 200
        await asyncio.sleep(0.03)
        assert await worker.run_due() == 0
    [delivered] = await deliveries(db)
    assert (delivered.status, delivered.attempts) == (DeliveryStatus.DELIVERED, 2)
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


async def test_an_acknowledged_delivery_is_recorded_across_a_database_outage(
    db: Database,
    settings: NotificationsSettings,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The receiver answered 2xx while the database was down: the sender waits for the
    database to record it, rather than leave it pending to be sent again."""
    receiver.statuses = []
    async with db.write() as session:
        await webhooks.create_webhook(session, receiver.url, ["order.confirmed"], settings)
    await publish(db, CONFIRMED)
    record, outage = webhooks.record_delivered, [ConnectionRefusedError("primary down")] * 2

    async def record_after_the_outage(*args, **kwargs) -> None:
        if outage:
            raise outage.pop()
        return await record(*args, **kwargs)

    monkeypatch.setattr(webhooks, "record_delivered", record_after_the_outage)
    sender = WebhookSender(db, settings)
    worker = JobWorker(db, [sender])
    async with contextlib.aclosing(sender):
        assert await worker.run_due() == 1
        assert await worker.run_due() == 0
    [delivered] = await deliveries(db)
    assert (delivered.status, delivered.attempts) == (DeliveryStatus.DELIVERED, 1)
    assert len(receiver.requests) == 1 and outage == []


async def test_only_subscribed_live_webhooks_get_a_delivery(
    db: Database, settings: NotificationsSettings, receiver: Receiver
) -> None:
    async with db.write() as session:
        confirmed = await webhooks.create_webhook(
            session, receiver.url, ["order.confirmed"], settings
        )
        refunds = await webhooks.create_webhook(
            session, receiver.url, ["payment.refunded", "payment.refunded"], settings
        )
        gone = await webhooks.create_webhook(session, receiver.url, ["order.cancelled"], settings)
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


async def test_an_event_no_webhook_wants_costs_no_transaction(
    db: Database, settings: NotificationsSettings, receiver: Receiver
) -> None:
    async with db.write() as session:
        await webhooks.create_webhook(session, receiver.url, ["payment.refunded"], settings)
    not_wanted = {"consumer": handlers.WEBHOOK_CONSUMER, "outcome": "not_wanted"}
    before = REGISTRY.get_sample_value("bazaar_events_handled_total", not_wanted) or 0

    envelope = await publish(db, CONFIRMED)  # nobody subscribed to order.confirmed

    assert REGISTRY.get_sample_value("bazaar_events_handled_total", not_wanted) == before + 1
    async with db.read() as session:
        recorded = await session.scalar(
            select(func.count()).where(processed_event.c.event_id == envelope.id)
        )
    assert recorded == 0  # nothing changed, nothing to keep from doing twice
    assert await deliveries(db) == []


async def test_a_delivery_that_keeps_failing_is_given_up(
    db: Database, settings: NotificationsSettings, receiver: Receiver
) -> None:
    receiver.statuses = [500, 503, 404]
    async with db.write() as session:
        await webhooks.create_webhook(session, receiver.url, ["order.confirmed"], settings)
    await publish(db, CONFIRMED)
    sender = WebhookSender(db, settings)
    worker = JobWorker(db, [sender])
    async with contextlib.aclosing(sender):
        for _ in range(settings.webhook_attempts):
            assert await worker.run_due() == 1
            await asyncio.sleep(0.05)
        assert await worker.run_due() == 0
    [delivery] = await deliveries(db)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, 3)
    assert len(receiver.requests) == 3


async def test_an_unreachable_webhook_is_retried(
    db: Database, settings: NotificationsSettings
) -> None:
    server = await asyncio.start_server(lambda _r, _w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    async with db.write() as session:
        await webhooks.create_webhook(
            session, f"http://127.0.0.1:{port}/", ["order.confirmed"], settings
        )
    await publish(db, CONFIRMED)
    sender = WebhookSender(db, settings)
    worker = JobWorker(db, [sender])
    async with contextlib.aclosing(sender):
        assert await worker.run_due() == 1
    [delivery] = await deliveries(db)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.PENDING, 1)
    assert delivery.last_status_code is None and "ConnectError" in (delivery.last_error or "")


async def test_the_running_sender_delivers_after_the_commit(
    db: Database, receiver: Receiver
) -> None:
    receiver.statuses = []
    slow = NotificationsSettings.from_env(Env({**FAST, "BAZAAR_WEBHOOK_POLL_INTERVAL": "30"}))
    sender = WebhookSender(db, slow)
    task = asyncio.create_task(JobWorker(db, [sender], poll_interval=30).run())
    try:
        await asyncio.sleep(0.05)
        async with db.write() as session:
            await webhooks.create_webhook(session, receiver.url, ["order.confirmed"], slow)
        await publish(db, CONFIRMED)
        for _ in range(100):
            if (await deliveries(db))[0].status == DeliveryStatus.DELIVERED:
                break
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert (await deliveries(db))[0].status == DeliveryStatus.DELIVERED
    assert len(receiver.requests) == 1


async def test_deleting_a_webhook_cancels_its_pending_deliveries(
    db: Database, settings: NotificationsSettings
) -> None:
    async with db.write() as session:
        hook = await webhooks.create_webhook(
            session, "https://93.184.215.14/h", ["order.confirmed"], settings
        )
    await publish(db, CONFIRMED)
    async with db.write() as session:
        await webhooks.delete_webhook(session, hook.id)
    assert [d.status for d in await deliveries(db)] == [DeliveryStatus.CANCELLED]
    async with db.write() as session:
        with pytest.raises(NotFound):
            await webhooks.delete_webhook(session, hook.id)


@pytest.mark.parametrize(
    "url", ["ftp://example.com/x", "example.com/hook", "http://", "http://exa mple.com/", ""]
)
async def test_a_webhook_url_must_be_absolute_http(
    url: str, settings: NotificationsSettings
) -> None:
    with pytest.raises(Unprocessable):
        await webhook_targets.check_url(url, settings)


def test_the_accepted_event_names_are_the_ones_fanned_out() -> None:
    assert set(get_args(WebhookEvent)) == set(handlers.WEBHOOK_EVENTS)
