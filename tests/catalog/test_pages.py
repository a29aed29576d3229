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


async def test_a_stale_shared_page_is_dropped_by_the_process_that_put_it_there(
    catalog: Database, pages: ProductPages
) -> None:
    """A reader put a page read before a change into the shared cache after the writer had
    dropped it: the change's broadcast reaches every instance, and the reader's drops it; an
    instance that put no page there asks the shared cache nothing."""
    product_id = await add_product(catalog, stock=1)
    async with catalog.read() as session:
        before = await service.get_product(session, product_id)
    reader = pages
    other = ProductPages(reader.cache, ttl=1.0, edge=ResponseCache(ttl=1.0))
    await reader.store(before)  # the stale page, in the shared cache
    async with catalog.write() as session:
        changed = await service.update_product(
            session, product_id, service.ProductChanges(name="Renamed")
        )
    asked = []
    real_get = reader.cache.get

    async def counted_get(key: str, *args, **kwargs):
        asked.append(key)
        return await real_get(key, *args, **kwargs)

    reader.cache.get = counted_get  # type: ignore[method-assign]
    key = f"catalog:product:{product_id}"
    await other.drop_older(product_id, changed.updated_at)
    assert asked == [] and await real_get(key) is not None
    await reader.drop_older(product_id, changed.updated_at)
    assert asked == [key] and await real_get(key) is None


async def test_a_process_forgets_what_it_stored_once_it_has_expired(
    catalog: Database, pages: ProductPages
) -> None:
    first, second = await add_product(catalog, sku="A-1"), await add_product(catalog, sku="B-1")
    short = ProductPages(pages.cache, ttl=0.05)
    async with catalog.read() as session:
        await short.store(await service.get_product(session, first))
        assert short._stored_lately(first)
        await asyncio.sleep(0.06)
        assert not short._stored_lately(first)
        await short.store(await service.get_product(session, second))
    assert list(short._stored) == [second]
