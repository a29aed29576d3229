"""What orders does when the checkout saga's other steps report back: settle the order.

Each handler runs inside the transaction that records the event as handled, so it takes
effect once however often the event is delivered. Only a `pending` order moves: an event for
an order the customer has already cancelled changes nothing.
"""

from bazaar.catalog.events import StockRejected
from bazaar.orders import service
from bazaar.orders.models import CancelReason, Order
from bazaar.payments.events import PaymentDeclined, PaymentFailed, PaymentSucceeded
from bazaar.platform.bus import Subscription, subscribe
from bazaar.platform.clock import utcnow
from bazaar.platform.db import Database, WriteSession, after_commit
from bazaar.platform.events import Envelope
from bazaar.platform.observability import SAGA_OUTCOMES, SETTLE_TIME, log
from bazaar.platform.shards import ShardedDatabase

CONSUMER = "orders"
"""One consumer for every saga event orders takes: one queue, one record of handled events."""


def _settled(session: WriteSession, order: Order | None, order_id: str, outcome: str) -> None:
    """Count a settled order and time it from its placing, once its new state has committed."""
    if order is None:
        log.info("order_not_pending", order_id=order_id, outcome=outcome)
        return
    status, placed_at = order.status, order.created_at

    def record() -> None:
        SAGA_OUTCOMES.labels(outcome).inc()
        SETTLE_TIME.labels(status).observe((utcnow() - placed_at).total_seconds())

    after_commit(session, record)


def subscriptions(orders: ShardedDatabase) -> list[Subscription]:
    """The saga events orders consumes, each handled on the shard its order id names."""

    def shard_of(envelope: Envelope) -> Database:
        # an id no shard could have made names no order: any shard records it as handled
        return orders.for_id(envelope.key) or orders.shards[0]

    async def abandon_order_out_of_stock(session: WriteSession, event: StockRejected) -> None:
        order = await service.abandon_order(session, event.order_id, CancelReason.OUT_OF_STOCK)
        _settled(session, order, event.order_id, CancelReason.OUT_OF_STOCK)

    async def confirm_order(session: WriteSession, event: PaymentSucceeded) -> None:
        order = await service.confirm_order(session, event.order_id, event.payment_id)
        _settled(session, order, event.order_id, "confirmed")

    async def abandon_order_payment_declined(session: WriteSession, event: PaymentDeclined) -> None:
        order = await service.abandon_order(
            session, event.order_id, CancelReason.PAYMENT_DECLINED, event.payment_id
        )
        _settled(session, order, event.order_id, CancelReason.PAYMENT_DECLINED)

    async def abandon_order_payment_failed(session: WriteSession, event: PaymentFailed) -> None:
        order = await service.abandon_order(
            session, event.order_id, CancelReason.PAYMENT_FAILED, event.payment_id
        )
        _settled(session, order, event.order_id, CancelReason.PAYMENT_FAILED)

    return [
        subscribe(CONSUMER, StockRejected, abandon_order_out_of_stock, shard_of),
        subscribe(CONSUMER, PaymentSucceeded, confirm_order, shard_of),
        subscribe(CONSUMER, PaymentDeclined, abandon_order_payment_declined, shard_of),
        subscribe(CONSUMER, PaymentFailed, abandon_order_payment_failed, shard_of),
    ]
