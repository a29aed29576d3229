"""Webhook use cases: register, list and remove webhooks, fan events out to deliveries, and
the delivery queue the webhook sender works.

A delivery is unique per (webhook, event id) and carries the exact body it will POST, so every
retry sends the same bytes with the same signature, and an acknowledged one is never sent again.
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import select, update

from bazaar.notifications import webhook_targets
from bazaar.notifications.models import DeliveryStatus, Webhook, WebhookDelivery
from bazaar.notifications.settings import NotificationsSettings
from bazaar.platform.clock import utcnow
from bazaar.platform.db import (
    ReadSession,
    WriteSession,
    insert_ignoring_duplicates,
    signal_after_commit,
)
from bazaar.platform.errors import NotFound
from bazaar.platform.events import Envelope
from bazaar.platform.ids import new_id
from bazaar.platform.pagination import Page, decode_cursor, page_of

DELIVERY_QUEUED = "notifications.delivery_queued"
"""The signal that wakes the webhook sender after a commit that queued a delivery."""

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
        created += await insert_ignoring_duplicates(
            session,
            WebhookDelivery.__table__,
            id=new_id(),
            webhook_id=webhook.id,
            event_id=envelope.id,
            event_type=envelope.type,
            payload=payload,
            status=DeliveryStatus.PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    if created:
        signal_after_commit(session, DELIVERY_QUEUED)
    return created


async def claim_due_deliveries(
    session: WriteSession, limit: int, lease: float
) -> list[DueDelivery]:
    """Take up to `limit` due deliveries of live webhooks for `lease` seconds (see mailer)."""
    now = utcnow()
    rows = await session.execute(
        select(WebhookDelivery, Webhook.url, Webhook.secret)
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(
            WebhookDelivery.status == DeliveryStatus.PENDING,
            WebhookDelivery.next_attempt_at <= now,
            Webhook.deleted_at.is_(None),
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
    )
    claimed = []
    for delivery, url, secret in rows.all():
        taken = await session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery.id,
                WebhookDelivery.status == DeliveryStatus.PENDING,
                WebhookDelivery.next_attempt_at <= now,
            )
            .values(next_attempt_at=now + timedelta(seconds=lease))
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount:
            claimed.append(
                DueDelivery(
                    delivery.id,
                    delivery.event_id,
                    delivery.event_type,
                    delivery.payload,
                    url,
                    secret,
                )
            )
    return claimed


async def record_attempt(
    session: WriteSession,
    delivery_id: str,
    settings: NotificationsSettings,
    *,
    status_code: int | None,
    error: str | None,
) -> str:
    """Count one POST: a 2xx delivers it for good; otherwise retry with backoff until the last
    attempt, then it has failed. Returns the delivery's new status."""
    delivery = await session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.status != DeliveryStatus.PENDING:
        return delivery.status if delivery else DeliveryStatus.FAILED
    delivery.attempts += 1
    delivery.last_status_code = status_code
    delivery.last_error = error[:2000] if error else None
    if status_code is not None and 200 <= status_code < 300:
        delivery.status = DeliveryStatus.DELIVERED
        delivery.delivered_at = utcnow()
    elif delivery.attempts >= settings.webhook_attempts:
        delivery.status = DeliveryStatus.FAILED
    else:
        delivery.next_attempt_at = _after(settings.webhook_delay(delivery.attempts))
    return delivery.status


async def refuse_delivery(session: WriteSession, delivery_id: str, reason: str) -> str:
    """Fail a delivery for good without sending it: its host now resolves to an address
    webhooks may not reach. Not counted as an attempt, since nothing was sent."""
    delivery = await session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.status != DeliveryStatus.PENDING:
        return delivery.status if delivery else DeliveryStatus.FAILED
    delivery.status = DeliveryStatus.FAILED
    delivery.last_status_code = None
    delivery.last_error = f"refused: {reason}"[:2000]
    return delivery.status


def _after(seconds: float) -> datetime:
    return utcnow() + timedelta(seconds=seconds)
