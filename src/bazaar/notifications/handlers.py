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
"""One consumer for the customer's notifications and emails, whatever the event."""
WEBHOOK_CONSUMER = "notifications.webhooks"
"""A consumer of its own: the same event id is recorded once per consumer, and an order event
both notifies the customer and feeds the webhooks."""
RETIRED_CONSUMERS = {"notifications-webhooks": WEBHOOK_CONSUMER}
"""Names this service's consumers had before (old: new): the bus moves what their queues still
hold to the new one (a migration renamed their rows in the inbox and dead letters)."""

WEBHOOK_EVENTS: dict[str, type[Event]] = {
    event.event_type: event
    for event in (OrderPlaced, OrderConfirmed, OrderCancelled, PaymentSucceeded, PaymentRefunded)
}
"""The event types a webhook may subscribe to."""


def subscriptions(db: Database) -> list[Subscription]:
    """The customer's notifications and emails, and the webhooks' deliveries."""

    async def record_recipient(session: WriteSession, event: UserRegistered) -> None:
        await service.record_recipient(session, event)

    async def notify_order_confirmed(session: WriteSession, event: OrderConfirmed) -> None:
        await service.notify_order_confirmed(session, event)

    async def notify_order_cancelled(session: WriteSession, event: OrderCancelled) -> None:
        await service.notify_order_cancelled(session, event)

    def enqueue_webhook_deliveries(event_class: type[Event]) -> Handle:
        """A handler that queues the envelope for each webhook subscribed to its type.

        The data is decoded into the event's contract first, so a webhook receives the
        published fields only, and a malformed event is retried and dead-lettered rather than
        sent on.
        """

        async def handle(session: WriteSession, envelope: Envelope) -> None:
            data = msgspec.to_builtins(read_event(envelope, event_class))
            await webhooks.enqueue_deliveries(session, envelope, data)

        return handle

    return [
        subscribe(CONSUMER, UserRegistered, record_recipient, db),
        subscribe(CONSUMER, OrderConfirmed, notify_order_confirmed, db),
        subscribe(CONSUMER, OrderCancelled, notify_order_cancelled, db),
        *(
            Subscription(
                WEBHOOK_CONSUMER,
                event_type,
                enqueue_webhook_deliveries(event_class),
                lambda _e: db,
                wanted=lambda envelope: webhooks.any_subscribed(db, envelope.type),
            )
            for event_type, event_class in WEBHOOK_EVENTS.items()
        ),
    ]
