"""Catalog's parts for a process: routes, schema, event handlers and the job worker of imports."""

from cashews import Cache

from bazaar.catalog import api, handlers, models
from bazaar.catalog.imports import ProductImports
from bazaar.catalog.listings import ProductListings
from bazaar.catalog.pages import PAGE_PREFIX, ProductPages
from bazaar.catalog.settings import CatalogSettings
from bazaar.platform.db import Database
from bazaar.platform.edge_cache import ResponseCache
from bazaar.platform.job_worker import JobWorker
from bazaar.platform.migrations import ServiceSchema
from bazaar.platform.parts import ServiceParts
from bazaar.platform.web import service_router

SCHEMA = ServiceSchema("bazaar.catalog", models.Base.metadata)


def build(
    db: Database,
    cache: Cache,
    settings: CatalogSettings,
    edge: ResponseCache | None = None,
) -> ServiceParts:
    """Catalog's parts; with `edge`, product pages and listings are answered by the edge
    cache."""
    cache_control = f"public, max-age={settings.product_max_age}"
    listings = ProductListings(edge, settings.listing_cache_seconds, cache_control)
    pages = ProductPages(
        cache, settings.product_cache_seconds, edge, cache_control, on_drop=listings.drop
    )
    if edge is not None and settings.product_cache_seconds > 0:
        edge.fill_misses(PAGE_PREFIX, api.page_filler(db, pages))
    imports = ProductImports(db, pages, settings)
    # one import at a time, as each is a long run of batches
    worker = JobWorker(db, [imports], poll_interval=settings.import_poll_interval, batch_size=1)
    router = service_router(api.CONTROLLERS, api.dependencies(db, pages, listings))
    return ServiceParts(
        "catalog",
        SCHEMA,
        [db],
        router,
        subscriptions=handlers.subscriptions(db, pages),
        background=[worker.run],
    )
