"""Payments' request and response bodies."""

from datetime import datetime

import msgspec

from bazaar.platform.money import Money


class RefundRequest(msgspec.Struct):
    amount: Money | None = None
    """How much to give back; all that is left of the payment when omitted."""


class PaymentRead(msgspec.Struct):
    id: str
    order_id: str
    status: str
    amount: Money
    refunded_amount: Money
    created_at: datetime
