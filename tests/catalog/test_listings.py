"""Listings in the edge cache: answered as the route answers them, dropped by every change,
never older than the staleness bound, one database read for many concurrent misses."""

import asyncio
import time
from datetime import datetime
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import update

from bazaar.catalog.events import ProductUpdated
from bazaar.catalog.listings import ProductListings
from bazaar.catalog.models import Product
from bazaar.platform.bus import RetryPolicy, deliver
from bazaar.platform.clock import utcnow
from bazaar.platform.edge_cache import ResponseCache, cache_key
from bazaar.platform.events import Envelope
from bazaar.platform.queries import Query
from bazaar.runtime.embedded import Runtime
from tests.catalog.test_api import create, subscription
from tests.plugin import admin

LISTING = "/v1/products"
EMPTY = b'{"items":[],"next_cursor":null}'


def key_of(response: httpx.Response) -> str:
    """The key the edge cache keeps the response of this GET under."""
    return cache_key(response.request.url.path, response.request.url.query)


def edge_hits() -> float:
    return (
        REGISTRY.get_sample_value("bazaar_cache_requests_total", {"cache": "edge", "result": "hit"})
        or 0.0
    )


async def change_elsewhere(runtime: Runtime, product_id: str, **values: Any) -> None:
    """Change a product as another instance would, whose `product.updated` has not come."""
    async with runtime.platform.databases["catalog"].write() as session:
        await session.execute(update(Product).where(Product.id == product_id).values(**values))


async def test_a_cached_listing_is_answered_as_the_route_answers_it(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await create(client, await admin(runtime, client), name="Blue mug")
    search = {"q": "MUG", "limit": 5}
    first = await client.get(LISTING, params=search)
    assert first.status_code == 200 and first.json()["items"][0]["name"] == "Blue mug"
    assert runtime.platform.response_cache.get(key_of(first)) is not None
    hits = edge_hits()
    again = await client.get(LISTING, params=search)
    assert edge_hits() == hits + 1  # answered before routing
    assert (again.status_code, again.content) == (200, first.content)
    for header in ("content-type", "content-length", "etag", "cache-control"):
        assert again.headers[header] == first.headers[header], header
    assert first.headers["content-type"] == "application/json"
    assert first.headers["cache-control"] == "public, max-age=1"

    etag = {"If-None-Match": first.headers["etag"]}
    from_edge = await client.get(LISTING, params=search, headers=etag)
    runtime.platform.response_cache.clear()
    from_route = await client.get(LISTING, params=search, headers=etag)
    for unchanged in (from_edge, from_route):
        assert (unchanged.status_code, unchanged.content) == (304, b"")
        assert unchanged.headers["etag"] == first.headers["etag"]


async def test_errors_and_batch_reads_are_not_cached(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    created = await create(client, await admin(runtime, client))
    for params in ({"limit": 0}, {"cursor": "!!"}, {"ids": "a", "q": "mug"}):
        refused = await client.get(LISTING, params=params)
        assert refused.status_code == 422
        assert refused.headers["content-type"] == "application/problem+json"
        assert runtime.platform.response_cache.get(key_of(refused)) is None
    batch = await client.get(LISTING, params={"ids": created["id"]})
    assert [item["id"] for item in batch.json()["items"]] == [created["id"]]
    assert runtime.platform.response_cache.get(key_of(batch)) is None


async def test_a_change_shows_in_the_listings_at_once_where_it_was_made(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    headers = await admin(runtime, client)
    blue = await create(client, headers, sku="BLUE", name="Blue mug")

    async def names() -> list[str]:
        listing = await client.get(LISTING, params={"q": "mug"})
        assert runtime.platform.response_cache.get(key_of(listing)) is not None
        return [item["name"] for item in listing.json()["items"]]

    assert await names() == ["Blue mug"]
    await client.patch(f"/v1/products/{blue['id']}", json={"name": "Navy mug"}, headers=headers)
    assert await names() == ["Navy mug"]
    await create(client, headers, sku="RED", name="Red mug")
    assert await names() == ["Navy mug", "Red mug"]
    await client.delete(f"/v1/products/{blue['id']}", headers=headers)
    assert await names() == ["Red mug"]


async def test_a_listing_never_shows_a_change_later_than_the_staleness_bound(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    created = await create(client, await admin(runtime, client), stock=5)
    listing = await client.get(LISTING)
    await change_elsewhere(runtime, created["id"], stock=1)
    changed_at = time.monotonic()
    assert runtime.platform.response_cache.get(key_of(listing)) is not None  # still cached

    while True:
        asked_at = time.monotonic()
        [item] = (await client.get(LISTING)).json()["items"]
        if item["stock"] == 1:
            break
        # only a request sent within the bound may still be answered with the old stock
        assert asked_at - changed_at < 1.0
        await asyncio.sleep(0.02)


async def test_a_broadcast_change_drops_the_listings_read_before_it(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    created = await create(client, await admin(runtime, client), name="Blue mug")
    listing = await client.get(LISTING, params={"q": "mug"})
    drop = subscription(runtime, "catalog.drop_product_page")
    # the creation's own broadcast, arriving after the listing was read: it shows the product
    own = ProductUpdated(
        product_id=created["id"], updated_at=datetime.fromisoformat(created["updated_at"])
    )
    assert await deliver(drop, Envelope.wrap(own), RetryPolicy(attempts=1))
    assert runtime.platform.response_cache.get(key_of(listing)) is not None

    await change_elsewhere(runtime, created["id"], name="Green mug")
    elsewhere = ProductUpdated(product_id=created["id"], updated_at=utcnow())
    assert await deliver(drop, Envelope.wrap(elsewhere), RetryPolicy(attempts=1))
    assert runtime.platform.response_cache.get(key_of(listing)) is None
    again = await client.get(LISTING, params={"q": "mug"})
    assert [item["name"] for item in again.json()["items"]] == ["Green mug"]


async def test_fifty_concurrent_misses_of_a_listing_make_one_database_read(
    runtime: Runtime, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    await create(client, await admin(runtime, client))
    catalog = runtime.platform.databases["catalog"]
    rows = catalog._rows
    reads = 0

    async def slow_read(query: Query, params: dict[str, Any], fresh: bool) -> Any:
        nonlocal reads
        if "FROM product" in str(query.statement):
            reads += 1
            await asyncio.sleep(0.05)  # long enough for every request to miss
        return await rows(query, params, fresh)

    monkeypatch.setattr(catalog, "_rows", slow_read)
    answers = await asyncio.gather(*(client.get(LISTING, params={"limit": 7}) for _ in range(50)))
    assert reads == 1
    assert {answer.status_code for answer in answers} == {200}
    assert len({answer.content for answer in answers}) == 1


async def test_a_read_begun_before_a_drop_is_not_kept() -> None:
    edge = ResponseCache(ttl=1.0)
    listings = ProductListings(edge, ttl=1.0)
    release = asyncio.Event()

    async def before_the_change() -> bytes:
        await release.wait()
        return EMPTY

    async def after_the_change() -> bytes:
        return b'{"items":[{"id":"new"}],"next_cursor":null}'

    early = asyncio.ensure_future(listings.fetch("/v1/products", before_the_change))
    await asyncio.sleep(0)
    listings.drop()  # a product changed while the early read ran
    late = await listings.fetch("/v1/products", after_the_change)  # no wait for the early one
    release.set()
    assert (await early).body == EMPTY  # its own requests get what it read
    kept = edge.get("/v1/products")
    assert kept is not None and kept.body == late.body


async def test_only_the_newest_listings_are_kept() -> None:
    edge = ResponseCache(ttl=1.0)
    listings = ProductListings(edge, ttl=1.0, max_entries=2)

    async def load() -> bytes:
        return EMPTY

    for query in ("q=a", "q=b", "q=c"):
        await listings.fetch(f"/v1/products?{query}", load)
    assert edge.get("/v1/products?q=a") is None
    assert edge.get("/v1/products?q=b") is not None and edge.get("/v1/products?q=c") is not None
    listings.drop()
    assert edge.get("/v1/products?q=b") is None and edge.get("/v1/products?q=c") is None
