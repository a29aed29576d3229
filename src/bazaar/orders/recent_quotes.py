"""The catalog's quotes an orders process was given lately, kept for showing carts.

A cart is priced each time it is shown (a cart stores quantities only). Where the catalog runs
in another process, each pricing is a request to it: most of what a cart read costs both
services (docs/performance.md). A cart may show a price as old as a product page may (the
staleness bound), so a quote is kept that long and answers the carts shown meanwhile. An order
is never placed at a kept quote: `CatalogPrices.quote` asks the catalog unless `recent`.

As in the product page tier (catalog/pages.py), a product is asked about once at a time,
however many carts miss it at once. Unlike that tier, a quote is not asked for again ahead of
its end (refresh-ahead): that saves a cart's wait, but asks about every product a cart holds
up to twice as often, and what a cart read costs, not its wait, is what the asks weigh on (an
orders instance under a tenth of a core served fewer than 20 cart reads a second, about one
ask a read: docs/performance.md). Only quotes of products on sale are kept: an unknown or
deleted product is asked about again, so a product made a moment after someone asked for its
id is found at once.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import NamedTuple

from bazaar.orders.prices import Quote

MAX_QUOTES = 10_000
"""Quotes kept at most, the oldest dropped first."""

Ask = Callable[[Collection[str]], Awaitable[dict[str, Quote]]]
Asked = asyncio.Future[dict[str, Quote]]


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
        self._asking: dict[str, Asked] = {}
        """The ask under way that each product is in."""

    async def quote(self, product_ids: Collection[str], ask: Ask) -> dict[str, Quote]:
        """The quotes of `product_ids`: those kept and still young enough, the others from
        `ask` (the catalog), which are kept in turn."""
        now = time.monotonic()
        found: dict[str, Quote] = {}
        missing = []
        for product_id in set(product_ids):
            kept = self._kept.get(product_id)
            if kept is None or kept.until <= now:
                missing.append(product_id)
            else:
                found[product_id] = kept.quote
        if missing:
            waits = {self._asking[p] for p in missing if p in self._asking}
            if unasked := [p for p in missing if p not in self._asking]:
                waits.add(self._ask(unasked, ask))
            # shielded: a request that goes away does not cancel what others wait for
            for answer in await asyncio.gather(*map(asyncio.shield, waits)):
                found |= {p: answer[p] for p in missing if p in answer}
        return found

    def _ask(self, product_ids: list[str], ask: Ask) -> Asked:
        """One ask of the catalog for `product_ids`, which others may wait for too."""
        asked = asyncio.ensure_future(self._asked(product_ids, ask))
        asked.add_done_callback(_retrieved)
        for product_id in product_ids:
            self._asking[product_id] = asked
        return asked

    async def _asked(self, product_ids: list[str], ask: Ask) -> dict[str, Quote]:
        started = time.monotonic()
        try:
            answer = await ask(product_ids)
        finally:
            for product_id in product_ids:
                if self._asking.get(product_id) is asyncio.current_task():
                    del self._asking[product_id]
        self._keep(answer.values(), started)
        return answer

    def _keep(self, quotes: Iterable[Quote], asked_at: float) -> None:
        kept = self._kept
        until = asked_at + self.seconds
        for quote in quotes:
            kept.pop(quote.product_id, None)  # to the end: the newest
            kept[quote.product_id] = _Kept(quote, until)
        while len(kept) > self.max_quotes:
            del kept[next(iter(kept))]


def _retrieved(asked: Asked) -> None:
    """An ask's failure reaches those who wait for it (as `Unavailable`): when all of them
    went away meanwhile, it is not reported again as never retrieved."""
    if not asked.cancelled():
        asked.exception()
