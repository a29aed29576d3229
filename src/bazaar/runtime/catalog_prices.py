"""Orders' window on catalog prices when both run in one process: a read on catalog's database."""

from collections.abc import Collection

from bazaar.catalog.service import prices_of
from bazaar.orders.prices import Quote
from bazaar.platform.db import Database
from bazaar.platform.money import Money


class EmbeddedCatalogPrices:
    """`CatalogPrices` through catalog's own use case, on catalog's primary: an order is
    priced at the current price, not at a replica's slightly older one."""

    def __init__(self, catalog: Database) -> None:
        self.catalog = catalog

    async def quote(
        self, product_ids: Collection[str], *, recent: bool = False
    ) -> dict[str, Quote]:
        """Always the catalog's current quote: it costs one read on the driver here, no
        request to another process, so nothing is kept (`recent` is allowed, not needed)."""
        if not product_ids:
            return {}
        return {
            product_id: Quote(product_id, name, Money(amount, currency), stock)
            for product_id, name, amount, currency, stock in await prices_of(
                self.catalog, product_ids
            )
        }
