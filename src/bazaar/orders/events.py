"""Events orders publishes: its contract with the other services."""

from typing import ClassVar

import msgspec

from bazaar.platform.events import Event
from bazaar.platform.money import Money


class OrdersEvent(Event, frozen=True, kw_only=True):
    source: ClassVar[str] = "orders"


class OrderLine(msgspec.Struct, frozen=True):
    product_id: str
    quantity: int
    unit_price: Money


class OrderPlaced(OrdersEvent, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "order.placed"
    key_field: ClassVar[str] = "order_id"

    order_id: str
    customer_id: str
    lines: list[OrderLine]
    total: Money
    payment_method: str


class OrderConfirmed(OrdersEvent, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "order.confirmed"
    key_field: ClassVar[str] = "order_id"

    order_id: str
    customer_id: str
    total: Money
    payment_id: str


class OrderCancelled(OrdersEvent, frozen=True, kw_only=True):
    """The order will not be fulfilled. `reason` is its `cancel_reason`; reserved stock comes
    back, and a captured payment is refunded."""

    event_type: ClassVar[str] = "order.cancelled"
    key_field: ClassVar[str] = "order_id"

    order_id: str
    customer_id: str
    reason: str
    total: Money
    payment_id: str | None = None
