"""Orders' request and response bodies."""

from datetime import datetime
from typing import Annotated

import msgspec

from bazaar.platform.money import Money

ProductId = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
Quantity = Annotated[int, msgspec.Meta(ge=1, le=100)]
MAX_LINES = 100


class CartItemUpdate(msgspec.Struct):
    quantity: Quantity


class LineRequest(msgspec.Struct):
    product_id: ProductId
    quantity: Quantity


class ShippingAddress(msgspec.Struct):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    line1: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    city: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    postal_code: Annotated[str, msgspec.Meta(min_length=1, max_length=20)]
    country: Annotated[
        str, msgspec.Meta(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2 code")
    ]
    line2: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class PlaceOrderRequest(msgspec.Struct):
    payment_method: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    shipping_address: ShippingAddress
    items: (
        Annotated[
            list[LineRequest],
            msgspec.Meta(
                min_length=1,
                max_length=MAX_LINES,
                description="The lines to order; without it, the cart is ordered and emptied.",
            ),
        ]
        | None
    ) = None


class LineRead(msgspec.Struct):
    product_id: str
    quantity: int
    unit_price: Money


class CartRead(msgspec.Struct):
    items: list[LineRead]
    total: Money


class OrderRead(msgspec.Struct):
    id: str
    status: str
    cancel_reason: str | None
    items: list[LineRead]
    total: Money
    payment_id: str | None
    created_at: datetime
    updated_at: datetime


class AdminOrderRead(OrderRead):
    """An order in the admin listing: whose it is, as well."""

    customer_id: str
