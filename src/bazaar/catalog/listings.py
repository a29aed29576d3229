"""Product listings (`GET /v1/products`, filtered by category and name, a page at a time): the
one place a listing is encoded, and the edge cache's copies of those bytes.

A listing is answered as a product page is (`pages`): encoded once (msgspec), hashed into a
strong ETag and put into the in-process edge cache under its path and whole query string, so
the next identical GET is answered before routing. Concurrent misses of one listing make one
database read. Only the process's own memory keeps listings: every search is one, and one is
cheap to read again, so the shared cache (Redis) is left to product pages.

Staleness, as for product pages: a listing to be cached is read on the primary (a replica's
lag would add to the bound) and kept `ttl` less its age, counted from before its read began.
A product's change drops every listing of the instance that made it once it commits, and of
every instance when its `product.updated` arrives (unless all were dropped since); a read
asked for before a drop is not kept.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import NamedTuple

import msgspec

from bazaar.catalog.models import Product, ProductRow
from bazaar.catalog.pages import product_read, strong_etag
from bazaar.platform.edge_cache import ResponseCache
from bazaar.platform.observability import record_cache_lookup
from bazaar.platform.pagination import Page, page_of

LISTING_ROUTE = "/v1/products"
MAX_LISTINGS = 10_000
"""Listings kept at most, the oldest dropped first: searches that are all different must not
push the product pages out of the edge cache."""

_encoder = msgspec.json.Encoder()


class Listing(NamedTuple):
    """A listing's ETag (quoted, as sent) and its JSON body."""

    etag: str
    body: bytes


def listing_body(products: list[ProductRow], limit: int) -> bytes:
    """The page of up to `limit` of `products` (read one more, to tell whether more follow)."""
    page = page_of(products, limit, lambda product: (product.id,))
    return encode_products(page.items, page.next_cursor)


def encode_products(
    products: Sequence[Product | ProductRow], next_cursor: str | None = None
) -> bytes:
    return _encoder.encode(Page([product_read(p) for p in products], next_cursor))


class ProductListings:
    def __init__(
        self,
        edge: ResponseCache | None,
        ttl: float,
        cache_control: str = "",
        max_entries: int = MAX_LISTINGS,
    ) -> None:
        self.edge = edge
        self.ttl = ttl
        self.cache_control = cache_control
        self.max_entries = max_entries
        self._kept: dict[str, None] = {}
        """The keys of the listings put in the edge cache, oldest first."""
        self._loading: dict[str, asyncio.Future[Listing]] = {}
        self._drops = 0
        self._dropped_at = 0.0

    @property
    def cached(self) -> bool:
        """Whether listings are kept: else each is read where reads go (a replica if any)."""
        return self.edge is not None and self.ttl > 0

    async def fetch(self, key: str, load: Callable[[], Awaitable[bytes]]) -> Listing:
        """The listing under `key` (its path and query string, as the edge cache looks it up),
        from the edge cache, or encoded by `load` once for all the concurrent misses."""
        entry = self.edge.fresh(key) if self.edge is not None else None
        record_cache_lookup("listing", hit=entry is not None)
        # put there while this request was on its way to the route (a request sent on to
        # refresh the entry finds none: it reads again)
        if entry is not None:
            return Listing(entry.etag, entry.body)
        loading = self._loading.get(key)
        if loading is None:
            loading = asyncio.ensure_future(self._load(key, load, self._drops))
            self._loading[key] = loading
        return await asyncio.shield(loading)

    async def _load(self, key: str, load: Callable[[], Awaitable[bytes]], drops: int) -> Listing:
        started = time.monotonic()
        try:
            body = await load()
        finally:
            if self._loading.get(key) is asyncio.current_task():
                del self._loading[key]
        listing = Listing(strong_etag(body), body)
        if self.cached and drops == self._drops:
            self._keep(key, listing, age=time.monotonic() - started)
        return listing

    def _keep(self, key: str, listing: Listing, age: float) -> None:
        if self.edge is None:
            return
        self._kept.pop(key, None)
        self._kept[key] = None
        while len(self._kept) > self.max_entries:
            oldest = next(iter(self._kept))
            del self._kept[oldest]
            self.edge.invalidate(oldest)
        self.edge.put(key, listing.body, listing.etag, self.cache_control, LISTING_ROUTE, age=age)

    def drop(self, changed_at: datetime | None = None) -> None:
        """Drop every listing: a product changed, and any listing may show it (its name, price
        or stock, or where it falls among the others). A read already asked for may predate
        the change: it still answers its requests, but is not kept, and later ones read again.

        With `changed_at`, the time of a change that a broadcast tells of, the listings are
        kept when all were dropped after it already: as this instance did after it committed
        the change itself (its listings read since show it). A change made before such a drop
        but committed after it is then missed here, and shows once its listings expire, within
        the staleness bound."""
        if changed_at is not None and changed_at.timestamp() < self._dropped_at:
            return
        self._dropped_at = time.time()
        self._drops += 1
        self._loading.clear()
        if self.edge is not None:
            for key in self._kept:
                self.edge.invalidate(key)
        self._kept.clear()
