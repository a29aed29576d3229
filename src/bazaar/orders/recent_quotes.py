"""The catalog's quotes an orders process was given lately, kept for showing carts.

A cart is priced each time it is shown (a cart stores quantities only). Where the catalog runs
in another process, each pricing is a request to it: most of what a cart read costs both
services (docs/performance.md). A cart may show a price as old as a product page may (the
staleness bound), so a quote is kept that long and answers the carts shown meanwhile. An order
is never placed at a kept quote: `CatalogPrices.quote` asks the catalog unless `recent`.

Only quotes of products on sale are kept: an unknown or deleted product is asked about again,
so a product made a moment after someone asked for its id is found at once.
"""

import time
from collections.abc import Awaitable, Callable, Collection
from typing import NamedTuple

from bazaar.orders.prices import Quote

MAX_QUOTES = 10_000
"""Quotes kept at most, the oldest dropped first."""


class _Kept(NamedTuple):
    quote: Quote
    until: float
    """When it stops answering (`time.monotonic`)."""


class RecentQuotes:
    """Quotes kept for `seconds`, counted from before the catalog was asked for them."""

    def __init__(self, seconds: float, max_quotes: int = MAX_QUOTES) -> None:
        self.seconds = seconds
        self.max_quotes = max_quotes
        self._kept: dict[str, _Kept] = {}

    async def quote(
        self,
        product_ids: Collection[str],
        ask: Callable[[Collection[str]], Awaitable[dict[str, Quote]]],
    ) -> dict[str, Quote]:
        """The quotes of `product_ids`: those kept and still young enough, the others from
        `ask` (the catalog), which are kept in turn."""
        now = time.monotonic()
        found: dict[str, Quote] = {}
        missing = []
        for product_id in set(product_ids):
            kept = self._kept.get(product_id)
            if kept is not None and kept.until > now:
                found[product_id] = kept.quote
            else:
                missing.append(product_id)
        if missing:
            asked = await ask(missing)
            self._keep(asked.values(), until=now + self.seconds)
            found |= asked
        return found

    def _keep(self, quotes: Collection[Quote], until: float) -> None:
        kept = self._kept
        for quote in quotes:
            kept.pop(quote.product_id, None)  # to the end: the newest
            kept[quote.product_id] = _Kept(quote, until)
        while len(kept) > self.max_quotes:
            del kept[next(iter(kept))]
