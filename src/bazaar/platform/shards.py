"""Orders split across databases: customers hash to virtual shards, virtual shards map to
databases, and an id made here names its shard."""

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter

from bazaar.platform.db import Database
from bazaar.platform.ids import new_id

VIRTUAL_SHARDS = 256


@dataclass(frozen=True)
class ShardMap:
    """Customers hash to a fixed number of virtual shards; virtual shards map to databases.

    Adding a database later moves whole virtual shards (a new `assignment`), never rehashes
    every customer. Without an `assignment`, contiguous ranges are spread evenly.
    Raises ValueError for an assignment that leaves a virtual shard or a database out.
    """

    databases: int
    assignment: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= self.databases <= VIRTUAL_SHARDS:
            raise ValueError(f"expected 1..{VIRTUAL_SHARDS} databases, got {self.databases}")
        if not self.assignment:
            spread = tuple(v * self.databases // VIRTUAL_SHARDS for v in range(VIRTUAL_SHARDS))
            object.__setattr__(self, "assignment", spread)
        if len(self.assignment) != VIRTUAL_SHARDS:
            raise ValueError(
                f"expected {VIRTUAL_SHARDS} virtual shards, got {len(self.assignment)}"
            )
        beyond = sorted({i for i in self.assignment if not 0 <= i < self.databases})
        if beyond:
            raise ValueError(
                f"database {beyond[0]} does not exist: there are {self.databases} "
                f"(indexes 0..{self.databases - 1})"
            )
        unused = sorted(set(range(self.databases)) - set(self.assignment))
        if unused:
            raise ValueError(f"database {unused[0]} gets no virtual shard")

    @classmethod
    def parse(cls, text: str, databases: int) -> "ShardMap":
        """A map written as ranges of virtual shards and their database, `0-127=0,128-255=1`.

        Every virtual shard 0..255 appears exactly once; a range may be a single shard (`7=2`).
        """
        assignment: list[int | None] = [None] * VIRTUAL_SHARDS
        for entry in (part.strip() for part in text.split(",") if part.strip()):
            match = _ENTRY.fullmatch(entry)
            if match is None:
                raise ValueError(f"expected FIRST-LAST=DATABASE entries, got {entry!r}")
            first = int(match["first"])
            last = int(match["last"] or first)
            if not first <= last < VIRTUAL_SHARDS:
                raise ValueError(f"{entry!r}: virtual shards go from 0 to {VIRTUAL_SHARDS - 1}")
            for virtual_shard in range(first, last + 1):
                if assignment[virtual_shard] is not None:
                    raise ValueError(f"virtual shard {virtual_shard} is assigned twice")
                assignment[virtual_shard] = int(match["database"])
        missing = [v for v, database in enumerate(assignment) if database is None]
        if missing:
            raise ValueError(f"virtual shard {missing[0]} is not assigned")
        return cls(databases, tuple(i for i in assignment if i is not None))

    def describe(self) -> str:
        """The map in the form `parse` reads."""
        entries = []
        for database, run in groupby(enumerate(self.assignment), key=itemgetter(1)):
            shards = [virtual_shard for virtual_shard, _ in run]
            first, last = shards[0], shards[-1]
            entries.append(f"{first}={database}" if first == last else f"{first}-{last}={database}")
        return ",".join(entries)

    @staticmethod
    def virtual_shard(customer_id: str) -> int:
        return zlib.crc32(customer_id.encode()) % VIRTUAL_SHARDS

    def database_of(self, virtual_shard: int) -> int:
        return self.assignment[virtual_shard]


_ENTRY = re.compile(r"(?P<first>\d{1,3})(?:-(?P<last>\d{1,3}))?=(?P<database>\d{1,3})")


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
