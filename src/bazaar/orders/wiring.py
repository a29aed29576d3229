"""Orders' parts for a process: routes, schema on every shard, and the saga handlers."""

from bazaar.orders import api, handlers, models
from bazaar.orders.prices import CatalogPrices
from bazaar.platform.idempotency import Idempotency
from bazaar.platform.migrations import ServiceSchema
from bazaar.platform.parts import ServiceParts
from bazaar.platform.shards import ShardedDatabase
from bazaar.platform.web import service_router

SCHEMA = ServiceSchema("bazaar.orders", models.Base.metadata)


def build(orders: ShardedDatabase, prices: CatalogPrices, idempotency: Idempotency) -> ServiceParts:
    """Orders on every shard of `orders`; `prices` answers what the catalog sells now."""
    router = service_router(api.CONTROLLERS, api.dependencies(orders, prices, idempotency))
    return ServiceParts(
        "orders",
        SCHEMA,
        list(orders.shards),
        router,
        subscriptions=handlers.subscriptions(orders),
    )
