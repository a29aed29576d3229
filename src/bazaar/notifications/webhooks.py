"""Webhook use cases: register, list and remove webhooks, fan events out to deliveries (each a
job the webhook sender runs), and record what each POST got.

A delivery is unique per (webhook, event id) and carries the exact body it will POST, so every
retry sends the same bytes with the same signature, and an acknowledged one is never sent again.
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import select, update

from bazaar.notifications import webhook_targets
from bazaar.notifications.models import DeliveryStatus, Webhook, WebhookDelivery
from bazaar.notifications.settings import NotificationsSettings
from bazaar.platform import jobs
from bazaar.platform.clock import utcnow
from bazaar.platform.db import Database, ReadSession, WriteSession
from bazaar.platform.errors import NotFound
from bazaar.platform.events import Envelope
from bazaar.platform.ids import new_id
from bazaar.platform.pagination import Page, decode_cursor, page_of
from bazaar.platform.queries import Query
from bazaar.platform.statements import insert_ignoring_duplicates

WEBHOOK_JOB = "webhook"
"""The job that POSTs one delivery (notifications/webhook_sender.py)."""

SIGNATURE_HEADER = "Bazaar-Signature"


@dataclass(frozen=True)
class DueDelivery:
    id: str
    event_id: str
    event_type: str
    payload: bytes
    url: str
    secret: str


def sign(secret: str, body: bytes) -> str:
    """The `Bazaar-Signature` value: `sha256=` and the hex HMAC-SHA256 of the exact body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def create_webhook(
    session: WriteSession, url: str, events: list[str], settings: NotificationsSettings
) -> Webhook:
    """Register a webhook with a new signing secret (shown to the admin only now).

    The URL must point at an address webhooks may reach (webhook_targets.check_url: 422, or
    503 while DNS does not answer); it is looked up before anything is written.
    """
    webhook = Webhook(
        id=new_id(),
        url=await webhook_targets.check_url(url, settings),
        events=list(dict.fromkeys(events)),
        secret="whsec_" + secrets.token_urlsafe(32),
        created_at=utcnow(),
    )
    session.add(webhook)
    return webhook


async def list_webhooks(session: ReadSession, limit: int, cursor: str | None) -> Page[Webhook]:
    """Webhooks that are not deleted, newest first."""
    query = select(Webhook).where(Webhook.deleted_at.is_(None))
    position = decode_cursor(cursor)
    if position is not None:
        query = query.where(Webhook.id < str(position[0]))
    rows = await session.scalars(query.order_by(Webhook.id.desc()).limit(limit + 1))
    return page_of(list(rows), limit, lambda webhook: (webhook.id,))


async def delete_webhook(session: WriteSession, webhook_id: str) -> None:
    """Stop a webhook: no new deliveries, and its pending ones are cancelled."""
    webhook = await session.get(Webhook, webhook_id)
    if webhook is None or webhook.deleted_at is not None:
        raise NotFound("No such webhook")
    webhook.deleted_at = utcnow()
    await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.webhook_id == webhook_id,
            WebhookDelivery.status == DeliveryStatus.PENDING,
        )
        .values(status=DeliveryStatus.CANCELLED)
    )


def payload_of(envelope: Envelope, data: dict[str, Any]) -> bytes:
    """The JSON body a webhook receives: the event's id, type, time and data."""
    return msgspec.json.encode(
        {
            "id": envelope.id,
            "type": envelope.type,
            "occurred_at": envelope.occurred_at,
            "data": data,
        }
    )


async def any_subscribed(db: Database, event_type: str) -> bool:
    """Whether a live webhook is subscribed to `event_type`: a read, so that a shop without
    webhooks spends no transaction on each of its events (three an order). A webhook
    registered while the answer travels misses that event, as one registered a moment later
    would."""
    found = await db.rows(_SUBSCRIBED, {}, fresh=True)
    return any(event_type in events for (events,) in found)


_SUBSCRIBED = Query(select(Webhook.events).where(Webhook.deleted_at.is_(None)))


async def enqueue_deliveries(
    session: WriteSession, envelope: Envelope, data: dict[str, Any]
) -> int:
    """A delivery for each live webhook subscribed to the event's type; how many are new."""
    webhooks = await session.scalars(select(Webhook).where(Webhook.deleted_at.is_(None)))
    payload = payload_of(envelope, data)
    now = utcnow()
    created = 0
    for webhook in webhooks:
        if envelope.type not in webhook.events:
            continue
        delivery_id = new_id()
        queued = await insert_ignoring_duplicates(
            session,
            WebhookDelivery.__table__,
            id=delivery_id,
            webhook_id=webhook.id,
            event_id=envelope.id,
            event_type=envelope.type,
            payload=payload,
            status=DeliveryStatus.PENDING,
            attempts=0,
            created_at=now,
        )
        if queued:
            jobs.enqueue(session, WEBHOOK_JOB, {"delivery_id": delivery_id})
            created += 1
    return created


async def due_delivery(session: ReadSession, delivery_id: str) -> DueDelivery | None:
    """The delivery to POST, with its webhook's URL and secret; None when there is nothing to
    send any more (delivered, failed, cancelled with its webhook)."""
    row = (
        await session.execute(
            select(WebhookDelivery, Webhook.url, Webhook.secret)
            .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
            .where(
                WebhookDelivery.id == delivery_id,
                WebhookDelivery.status == DeliveryStatus.PENDING,
                Webhook.deleted_at.is_(None),
            )
        )
    ).one_or_none()
    if row is None:
        return None
    delivery, url, secret = row
    return DueDelivery(
        delivery.id, delivery.event_id, delivery.event_type, delivery.payload, url, secret
    )


async def record_delivered(session: WriteSession, delivery_id: str, status_code: int) -> None:
    """The receiver acknowledged the delivery with a 2xx: it is delivered for good."""
    delivery = await session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.status != DeliveryStatus.PENDING:
        return
    delivery.attempts += 1
    delivery.last_status_code = status_code
    delivery.last_error = None
    delivery.status = DeliveryStatus.DELIVERED
    delivery.delivered_at = utcnow()


async def record_failure(
    session: WriteSession,
    delivery_id: str,
    *,
    status_code: int | None,
    error: str,
    final: bool,
    counted: bool = True,
) -> None:
    """A POST that was not acknowledged (or, not `counted`, one refused before it was sent):
    the job queue tries again later, and `final` fails the delivery."""
    delivery = await session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.status != DeliveryStatus.PENDING:
        return
    delivery.attempts += 1 if counted else 0
    delivery.last_status_code = status_code
    delivery.last_error = error[:2000]
    if final:
        delivery.status = DeliveryStatus.FAILED
