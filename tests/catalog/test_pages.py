"""Product pages: one database read for many concurrent misses; the edge keeps a page no
longer than the staleness bound allows."""

import asyncio

from bazaar.catalog import service
from bazaar.catalog.models import Product
from bazaar.catalog.pages import ProductPages, product_page
from bazaar.platform.db import Database
from bazaar.platform.edge_cache import ResponseCache
from tests.catalog.conftest import add_product


async def test_fifty_concurrent_misses_make_one_database_read(
    catalog: Database, pages: ProductPages
) -> None:
    product_id = await add_product(catalog, stock=1)
    reads = 0

    async def load() -> Product:
        nonlocal reads
        reads += 1
        async with catalog.read() as session:
            await asyncio.sleep(0.01)  # long enough for every request to miss
            return await service.get_product(session, product_id)

    results = await asyncio.gather(*(pages.fetch(product_id, load) for _ in range(50)))
    assert reads == 1
    assert len({page.etag for page in results}) == 1


async def test_a_page_read_a_while_ago_lives_only_the_rest_of_the_bound(
    catalog: Database, pages: ProductPages
) -> None:
    product_id = await add_product(catalog, stock=1)
    async with catalog.read() as session:
        page = product_page(await service.get_product(session, product_id))
    edge = ResponseCache(ttl=1.0)
    aged = page._replace(read_at=page.read_at - 0.95)
    ProductPages(pages.cache, ttl=1.0, edge=edge)._to_edge(product_id, aged)
    assert edge.get(ProductPages.path(product_id)) is not None
    await asyncio.sleep(0.1)
    assert edge.get(ProductPages.path(product_id)) is None


async def test_a_page_past_half_the_bound_answers_at_once_and_is_read_again_once(
    catalog: Database, pages: ProductPages
) -> None:
    product_id = await add_product(catalog, stock=1)
    reads = 0
    refreshed = asyncio.Event()

    async def load() -> Product:
        nonlocal reads
        reads += 1
        if reads > 1:
            refreshed.set()
        async with catalog.read() as session:
            return await service.get_product(session, product_id)

    first = await pages.fetch(product_id, load)
    aged = first._replace(read_at=first.read_at - pages.ttl * 0.6)
    await pages.cache.set(pages._key(product_id), aged, expire=pages.ttl)
    answers = await asyncio.gather(*(pages.fetch(product_id, load) for _ in range(20)))
    assert {page.read_at for page in answers} == {aged.read_at}  # nobody waited
    await asyncio.wait_for(refreshed.wait(), timeout=5)
    await asyncio.sleep(0.05)
    assert reads == 2  # one refresh for the twenty
    newer = await pages.fetch(product_id, load)
    assert newer.read_at > aged.read_at and reads == 2
