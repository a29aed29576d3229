"""Orders split across databases: customers hash to virtual shards, virtual shards map to
databases, and an id made here names its shard."""

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from bazaar.platform.db import Database
from bazaar.platform.ids import new_id

VIRTUAL_SHARDS = 256


@dataclass(frozen=True)
class ShardMap:
    """Customers hash to a fixed number of virtual shards; virtual shards map to databases.

    Adding a database later moves whole virtual shards (a new `assignment`), never rehashes
    every customer.
    """

    databases: int
    assignment: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.assignment:
            spread = tuple(v * self.databases // VIRTUAL_SHARDS for v in range(VIRTUAL_SHARDS))
            object.__setattr__(self, "assignment", spread)

    @staticmethod
    def virtual_shard(customer_id: str) -> int:
        return zlib.crc32(customer_id.encode()) % VIRTUAL_SHARDS

    def database_of(self, virtual_shard: int) -> int:
        return self.assignment[virtual_shard]


@dataclass
class ShardedDatabase:
    """A database split across shards by customer; an id made here tells its shard."""

    shards: Sequence[Database]
    map: ShardMap

    def for_customer(self, customer_id: str) -> Database:
        return self.shards[self.map.database_of(self.map.virtual_shard(customer_id))]

    def new_id(self, customer_id: str) -> str:
        """A new id whose last two hex digits are the customer's virtual shard."""
        return f"{new_id()[:-2]}{self.map.virtual_shard(customer_id):02x}"

    def for_id(self, entity_id: str) -> Database | None:
        """The shard holding an id made by `new_id`, or None when the id cannot be one."""
        try:
            virtual_shard = int(entity_id[-2:], 16)
        except ValueError:
            return None
        if len(entity_id) != 36:
            return None
        return self.shards[self.map.database_of(virtual_shard)]

    async def dispose(self) -> None:
        for shard in self.shards:
            await shard.dispose()
