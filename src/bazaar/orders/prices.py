"""The port through which orders learns what the catalog sells now, and at what price."""

from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

from bazaar.platform.money import Money


@dataclass(frozen=True, slots=True)
class Quote:
    """A product as the catalog offers it at this moment."""

    product_id: str
    name: str
    unit_price: Money
    stock: int


@dataclass(frozen=True, slots=True)
class PricedLine:
    """A quantity of a product at a unit price: a cart's line as quoted now, an order's as
    it was quoted when placed."""

    product_id: str
    quantity: int
    unit_price: Money


class CatalogPrices(Protocol):
    async def quote(
        self, product_ids: Collection[str], *, recent: bool = False
    ) -> dict[str, Quote]:
        """The current quote of each product on sale, by id.

        Unknown and deleted products are absent from the answer; it is not an error to ask.
        With `recent`, what a cart shows, a quote the catalog gave within the staleness bound
        may answer (orders/recent_quotes.py); without, what an order is placed at, the catalog
        is asked.
        """
        ...
