"""Orders' unit of work for one request (platform/unit_of_work.py)."""

from bazaar.orders.prices import CatalogPrices
from bazaar.platform.db import Database
from bazaar.platform.idempotency import Claim
from bazaar.platform.shards import ShardedDatabase
from bazaar.platform.unit_of_work import UnitOfWork


class OrdersWork(UnitOfWork):
    """Orders' unit of work for one request: its shard's reads and write transaction, the
    shards themselves (which make order ids and serve the admin's listing), and the catalog's
    prices."""

    def __init__(
        self,
        db: Database,
        shards: ShardedDatabase,
        prices: CatalogPrices,
        *,
        claim: Claim | None = None,
    ) -> None:
        super().__init__(db, claim=claim)
        self.shards = shards
        self.prices = prices
