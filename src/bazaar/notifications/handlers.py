"""What notifications does when another service's event arrives."""

import msgspec

from bazaar.identity.events import UserRegistered
from bazaar.notifications import service, webhooks
from bazaar.orders.events import OrderCancelled, OrderConfirmed, OrderPlaced
from bazaar.payments.events import PaymentRefunded, PaymentSucceeded
from bazaar.platform.bus import Handle, Subscription, subscribe
from bazaar.platform.db import Database, WriteSession
from bazaar.platform.events import Envelope, Event, read_event

CONSUMER = "notifications"
WEBHOOK_CONSUMER = "notifications-webhooks"
"""A consumer of its own: the same event id is recorded once per consumer, and an order event
both notifies the customer and feeds the webhooks."""

WEBHOOK_EVENTS: dict[str, type[Event]] = {
    event.event_type: event
    for event in (OrderPlaced, OrderConfirmed, OrderCancelled, PaymentSucceeded, PaymentRefunded)
}
"""The event types a webhook may subscribe to."""


async def on_user_registered(session: WriteSession, event: UserRegistered) -> None:
    await service.record_recipient(session, event)


async def on_order_confirmed(session: WriteSession, event: OrderConfirmed) -> None:
    await service.notify_order_confirmed(session, event)


async def on_order_cancelled(session: WriteSession, event: OrderCancelled) -> None:
    await service.notify_order_cancelled(session, event)


def webhook_fan_out(event_class: type[Event]) -> Handle:
    """A handler that queues the envelope for each webhook subscribed to its type.

    The data is decoded into the event's contract first, so a webhook receives the published
    fields only, and a malformed event is retried and dead-lettered rather than sent on.
    """

    async def handle(session: WriteSession, envelope: Envelope) -> None:
        data = msgspec.to_builtins(read_event(envelope, event_class))
        await webhooks.enqueue_deliveries(session, envelope, data)

    return handle


def subscriptions(db: Database) -> list[Subscription]:
    return [
        subscribe(CONSUMER, UserRegistered, on_user_registered, db),
        subscribe(CONSUMER, OrderConfirmed, on_order_confirmed, db),
        subscribe(CONSUMER, OrderCancelled, on_order_cancelled, db),
        *(
            Subscription(WEBHOOK_CONSUMER, event_type, webhook_fan_out(event_class), lambda _e: db)
            for event_type, event_class in WEBHOOK_EVENTS.items()
        ),
    ]
