"""Events payments publishes: its contract with the other services."""

from typing import ClassVar

from bazaar.platform.events import Event
from bazaar.platform.money import Money


class PaymentsEvent(Event, frozen=True, kw_only=True):
    source: ClassVar[str] = "payments"


class PaymentSucceeded(PaymentsEvent, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "payment.succeeded"
    key_field: ClassVar[str] = "order_id"

    payment_id: str
    order_id: str
    customer_id: str
    amount: Money


class PaymentDeclined(PaymentsEvent, frozen=True, kw_only=True):
    """The provider refused the charge (the order's cancel_reason: payment_declined)."""

    event_type: ClassVar[str] = "payment.declined"
    key_field: ClassVar[str] = "order_id"

    payment_id: str
    order_id: str
    customer_id: str
    decline_code: str


class PaymentFailed(PaymentsEvent, frozen=True, kw_only=True):
    """The provider could not be reached after every retry (cancel_reason: payment_failed)."""

    event_type: ClassVar[str] = "payment.failed"
    key_field: ClassVar[str] = "order_id"

    payment_id: str
    order_id: str
    customer_id: str


class PaymentRefunded(PaymentsEvent, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "payment.refunded"
    key_field: ClassVar[str] = "order_id"

    payment_id: str
    order_id: str
    customer_id: str
    amount: Money
    refunded_total: Money
