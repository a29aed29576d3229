"""Product pages: the one place a product is encoded, and the caches of those bytes.

A page is encoded once (msgspec), hashed into a strong ETag, and kept for at most the
staleness bound in two tiers: the in-process edge cache, which answers before routing, and
the shared cashews cache (Redis when scaled out) behind it. A hit costs a lookup: no database,
no encoding. Every change drops the page after its commit, and every instance drops it again
when the `product.updated` event reaches it.
"""

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import NamedTuple

import msgspec
from cashews import Cache

from bazaar.catalog.models import Product, ProductRow
from bazaar.catalog.schemas import Price, ProductRead
from bazaar.platform.cache import jittered
from bazaar.platform.db import WriteSession, after_commit
from bazaar.platform.edge_cache import REFRESH_SHARE, ResponseCache
from bazaar.platform.ids import new_id
from bazaar.platform.observability import log, record_cache_lookup


class Page(NamedTuple):
    """A product page: its ETag (quoted, as sent), its JSON body, when it was read."""

    etag: str
    body: bytes
    read_at: float

    @property
    def age(self) -> float:
        return time.time() - self.read_at


PAGE_ROUTE = "/v1/products/{product_id:str}"
PAGE_PREFIX = "/v1/products/"
"""A product page's path, less the product's id."""
LOAD_LOCK_SECONDS = 0.5
"""How long one process may hold a product's load lock: others wait for its page that long."""
LOAD_POLL_SECONDS = 0.01

_encoder = msgspec.json.Encoder()


def product_read(product: Product | ProductRow) -> ProductRead:
    return ProductRead(
        id=product.id,
        sku=product.sku,
        name=product.name,
        description=product.description,
        category=product.category,
        price=Price(amount=product.price_amount, currency=product.currency),
        stock=product.stock,
        created_at=product.created_at,
        updated_at=product.updated_at,
    )


def product_page(product: Product | ProductRow) -> Page:
    """The one encoding of a product: its JSON bytes and their strong ETag."""
    body = _encoder.encode(product_read(product))
    return Page(strong_etag(body), body, time.time())


def strong_etag(body: bytes) -> str:
    """The strong ETag of a response's `body`, quoted as sent."""
    return f'"{hashlib.sha256(body).hexdigest()[:32]}"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an `If-None-Match` header names `etag` (weak comparison, as RFC 9110 says)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in if_none_match.split(","))


class ProductPages:
    def __init__(
        self,
        cache: Cache,
        ttl: float,
        edge: ResponseCache | None = None,
        cache_control: str = "",
        *,
        on_drop: Callable[[datetime | None], None] | None = None,
    ) -> None:
        self.cache = cache
        self.ttl = ttl
        self.edge = edge
        self.cache_control = cache_control
        self.on_drop = on_drop
        """Called whenever pages are dropped, with the time of the change when a broadcast
        tells it: what else shows products (the listings) goes with them."""
        self._pending: set[asyncio.Task[None]] = set()
        self._loading: dict[str, asyncio.Future[Page]] = {}
        self._stored: dict[str, float] = {}
        """When this process last put each product's page in the shared cache (monotonic),
        oldest first, for as long as the page may live there (`drop_older`)."""

    @staticmethod
    def path(product_id: str) -> str:
        return PAGE_PREFIX + product_id

    @staticmethod
    def _key(product_id: str) -> str:
        return f"catalog:product:{product_id}"

    async def fetch(
        self, product_id: str, load: Callable[[], Awaitable[Product | ProductRow]]
    ) -> Page:
        """The product's page from a cache, or from `load` once for many concurrent misses.

        Without the single flight, every request in flight when a hot page expires would read
        the database at once (a stampede). Within a process the first miss loads and the others
        await it; across processes (a shared cache) a short lock lets one load and the others
        wait for its page.

        A page past half the bound is read again in the background (refresh-ahead), by one
        process, while it still answers: a hot page is then never missed, and no request
        waits for the database.
        """
        page = await self.lookup(product_id)
        if page is not None:
            if page.age >= self.ttl * REFRESH_SHARE and product_id not in self._loading:
                refresh = asyncio.ensure_future(self._load(product_id, load, current=page))
                self._loading[product_id] = refresh
                refresh.add_done_callback(_log_failed_refresh)
            return page
        loading = self._loading.get(product_id)
        if loading is None:
            loading = asyncio.ensure_future(self._load(product_id, load))
            self._loading[product_id] = loading
        return await asyncio.shield(loading)

    async def _load(
        self,
        product_id: str,
        load: Callable[[], Awaitable[Product | ProductRow]],
        current: Page | None = None,
    ) -> Page:
        """The page read by `load`, or by another process holding the load lock; with
        `current` (a refresh), that page when another process is refreshing it already."""
        try:
            if self.ttl <= 0:
                return await self.store(await load())
            lock, token = f"{self._key(product_id)}:loading", new_id()
            if await self.cache.set_lock(lock, token, expire=LOAD_LOCK_SECONDS):
                try:
                    return await self.store(await load())
                finally:
                    await self.cache.unlock(lock, token)
            if current is not None:
                return current
            page = await self._loaded_elsewhere(product_id)
            return page if page is not None else await self.store(await load())
        finally:
            self._loading.pop(product_id, None)

    async def _loaded_elsewhere(self, product_id: str) -> Page | None:
        """The page another process is loading, once it is cached; None if it takes too long."""
        deadline = time.monotonic() + LOAD_LOCK_SECONDS
        while time.monotonic() < deadline:
            await asyncio.sleep(LOAD_POLL_SECONDS)
            page: Page | None = await self.cache.get(self._key(product_id))
            if page is not None:
                self._to_edge(product_id, page)
                return page
        return None

    async def lookup(self, product_id: str) -> Page | None:
        page: Page | None = await self.cache.get(self._key(product_id))
        record_cache_lookup("product_page", hit=page is not None)
        if page is not None:
            self._to_edge(product_id, page)
        return page

    async def store(self, product: Product | ProductRow) -> Page:
        page = product_page(product)
        if self.ttl > 0:
            await self.cache.set(self._key(product.id), page, expire=jittered(self.ttl))
            self._note_stored(product.id)
            self._to_edge(product.id, page)
        return page

    def _note_stored(self, product_id: str) -> None:
        now = time.monotonic()
        self._stored.pop(product_id, None)
        self._stored[product_id] = now
        while self._stored:
            oldest, stored_at = next(iter(self._stored.items()))
            if stored_at > now - self.ttl:
                break
            del self._stored[oldest]

    def _stored_lately(self, product_id: str) -> bool:
        """Whether a page this process put in the shared cache may still be there."""
        stored_at = self._stored.get(product_id)
        return stored_at is not None and stored_at > time.monotonic() - self.ttl

    def _to_edge(self, product_id: str, page: Page) -> None:
        if self.edge is not None:
            self.edge.put(
                self.path(product_id),
                page.body,
                page.etag,
                self.cache_control,
                PAGE_ROUTE,
                age=page.age,
            )

    async def drop(self, product_ids: Iterable[str]) -> None:
        self._dropped(None)
        ids = set(product_ids)
        if self.edge is not None:
            for product_id in ids:
                self.edge.invalidate(self.path(product_id))
        keys = [self._key(product_id) for product_id in ids]
        if keys:
            await self.cache.delete_many(*keys)

    async def drop_older(self, product_id: str, updated_at: datetime | None) -> None:
        """Drop the product's cached pages that do not show its change at `updated_at` yet.

        A page read after the change committed shows it already: the change's own broadcast,
        arriving later, keeps it rather than send the next reader to the database. Without
        `updated_at` every page of the product is dropped.

        The shared copy is looked at only by a process that put one there within its life:
        the process that made the change dropped it after the commit, so a stale copy there
        is one a reader put back from a read begun before that commit, and the broadcast
        reaches that reader's process too. Every instance receives every change, so the
        others skip a Redis round trip each (for a new product, every one of them)."""
        self._dropped(updated_at)
        if self._stored_lately(product_id):
            cached: Page | None = await self.cache.get(self._key(product_id))
            if cached is not None and not _shows(cached.body, updated_at):
                await self.cache.delete(self._key(product_id))
        edge = self.edge.get(self.path(product_id)) if self.edge is not None else None
        if self.edge is not None and edge is not None and not _shows(edge.body, updated_at):
            self.edge.invalidate(self.path(product_id))

    def _dropped(self, changed_at: datetime | None) -> None:
        if self.on_drop is not None:
            self.on_drop(changed_at)

    def drop_after_commit(self, session: WriteSession, product_ids: Iterable[str]) -> None:
        """Drop the pages once `session` commits (for code that does not own the commit)."""
        ids = list(product_ids)

        def committed() -> None:
            task = asyncio.get_running_loop().create_task(self._drop_quietly(ids))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

        after_commit(session, committed)

    async def _drop_quietly(self, product_ids: list[str]) -> None:
        try:
            await self.drop(product_ids)
        except Exception as error:  # the TTL and the product.updated event still bound staleness
            log.warning("product_page_drop_failed", error=str(error))


class _Stamp(msgspec.Struct):
    updated_at: datetime


def _shows(body: bytes, updated_at: datetime | None) -> bool:
    """Whether a product page's body shows the product as of `updated_at` or later."""
    if updated_at is None:
        return False
    return msgspec.json.decode(body, type=_Stamp).updated_at >= updated_at


def _log_failed_refresh(refresh: "asyncio.Future[Page]") -> None:
    """A refresh nobody awaits: its failure is logged (the page answers until it expires)."""
    if not refresh.cancelled() and (error := refresh.exception()) is not None:
        log.warning("product_page_refresh_failed", error=repr(error))
