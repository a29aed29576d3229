"""Events catalog publishes: its contract with the other services."""

from datetime import datetime
from typing import ClassVar

import msgspec

from bazaar.platform.events import Event
from bazaar.platform.money import Money


class CatalogEvent(Event, frozen=True, kw_only=True):
    source: ClassVar[str] = "catalog"


class ProductUpdated(CatalogEvent, frozen=True, kw_only=True):
    """A product was created, changed or deleted: caches of it must be dropped."""

    event_type: ClassVar[str] = "product.updated"
    key_field: ClassVar[str] = "product_id"

    product_id: str
    updated_at: datetime | None = None
    """The product's `updated_at` after the change: a cached page at least this new already
    shows it and is kept (None, from a release before it: every page is dropped)."""


class ReservedLine(msgspec.Struct, frozen=True):
    product_id: str
    quantity: int


class StockReserved(CatalogEvent, frozen=True, kw_only=True):
    """Every line of an order is reserved; the saga's data travels on to payments."""

    event_type: ClassVar[str] = "stock.reserved"
    key_field: ClassVar[str] = "order_id"

    order_id: str
    customer_id: str
    total: Money
    payment_method: str
    lines: list[ReservedLine]


class StockRejected(CatalogEvent, frozen=True, kw_only=True):
    """Some line of an order could not be reserved, so none was."""

    event_type: ClassVar[str] = "stock.rejected"
    key_field: ClassVar[str] = "order_id"

    order_id: str
    customer_id: str
    product_ids: list[str]


class StockReleased(CatalogEvent, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "stock.released"
    key_field: ClassVar[str] = "order_id"

    order_id: str
