"""What payments does when another service's event arrives: charge reserved orders, refund
cancelled ones."""

from bazaar.catalog.events import StockReserved
from bazaar.orders.events import OrderCancelled
from bazaar.payments import service
from bazaar.payments.provider import PaymentProvider
from bazaar.payments.settings import PaymentsSettings
from bazaar.platform.bus import Subscription, subscribe
from bazaar.platform.db import Database, WriteSession


def subscriptions(
    db: Database, provider: PaymentProvider, settings: PaymentsSettings
) -> list[Subscription]:
    """The saga's payment step and the refund of a cancelled order, each in its own consumer."""

    async def capture_payment(session: WriteSession, event: StockReserved) -> None:
        await service.capture_payment(
            session,
            provider,
            settings,
            order_id=event.order_id,
            customer_id=event.customer_id,
            total=event.total,
            payment_method=event.payment_method,
        )

    async def refund_cancelled_order(session: WriteSession, event: OrderCancelled) -> None:
        await service.refund_cancelled_order(
            session, provider, settings, order_id=event.order_id, reason=event.reason
        )

    return [
        subscribe("payments.capture_payment", StockReserved, capture_payment, db),
        subscribe("payments.refund_cancelled_order", OrderCancelled, refund_cancelled_order, db),
    ]
