"""The shard map: read from BAZAAR_ORDER_SHARD_MAP, checked whole, and moving whole virtual
shards when a database is added."""

from pathlib import Path

import pytest

from bazaar.platform.ids import new_id
from bazaar.platform.settings import Env, PlatformSettings, SettingsError
from bazaar.platform.shards import VIRTUAL_SHARDS, ShardedDatabase, ShardMap
from bazaar.platform.sqlite import sqlite_database
from bazaar.runtime.config import Settings
from bazaar.runtime.platform import build_platform

TWO_SHARD_URLS = "postgresql://h/bazaar_orders_a,postgresql://h/bazaar_orders_b"


def test_without_a_map_contiguous_ranges_are_spread_evenly() -> None:
    settings = PlatformSettings.from_env(Env({"BAZAAR_ORDER_SHARDS": "4"}))
    assert settings.order_shard_map.describe() == "0-63=0,64-127=1,128-191=2,192-255=3"


def test_a_map_is_read_as_ranges_of_virtual_shards() -> None:
    env = Env({"BAZAAR_ORDER_SHARDS": "3", "BAZAAR_ORDER_SHARD_MAP": " 0-99=2, 100=0 ,101-255=1"})
    shard_map = PlatformSettings.from_env(env).order_shard_map
    assert shard_map.databases == 3
    assert shard_map.assignment == (2,) * 100 + (0,) + (1,) * 155
    assert shard_map.describe() == "0-99=2,100=0,101-255=1"


def test_the_number_of_databases_comes_from_the_shard_urls() -> None:
    env = Env({"BAZAAR_ORDER_SHARD_URLS": TWO_SHARD_URLS, "BAZAAR_ORDER_SHARD_MAP": "0-255=1,"})
    with pytest.raises(SettingsError) as raised:
        PlatformSettings.from_env(env)
    assert raised.value.variable == "BAZAAR_ORDER_SHARD_MAP"
    assert "database 0 gets no virtual shard" in str(raised.value)
    assert "BAZAAR_ORDER_SHARD_URLS gives 2" in str(raised.value)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("0-127=0", "virtual shard 128 is not assigned"),
        ("0-128=0,128-255=1", "virtual shard 128 is assigned twice"),
        ("0-255=0", "database 1 gets no virtual shard"),
        ("0-127=0,128-255=2", "database 2 does not exist"),
        ("0-127=0,128-256=1", "virtual shards go from 0 to 255"),
        ("0-127=0,200-128=1", "virtual shards go from 0 to 255"),
        ("0-127:0,128-255:1", "expected FIRST-LAST=DATABASE entries"),
        ("first half=0", "expected FIRST-LAST=DATABASE entries"),
    ],
)
def test_a_bad_map_fails_naming_the_variable(value: str, problem: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"BAZAAR_ORDER_SHARDS": "2", "BAZAAR_ORDER_SHARD_MAP": value})
    assert raised.value.variable == "BAZAAR_ORDER_SHARD_MAP"
    assert str(raised.value).startswith("BAZAAR_ORDER_SHARD_MAP: ")
    assert problem in str(raised.value)


async def test_the_platform_routes_orders_by_the_map(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "BAZAAR_DATA_DIR": str(tmp_path),
            "BAZAAR_ORDER_SHARDS": "2",
            "BAZAAR_ORDER_SHARD_MAP": "0-9=1,10-255=0",
        }
    )
    platform = build_platform(settings.platform)
    try:
        orders = platform.orders
        for customer_id in (new_id() for _ in range(300)):
            expected = 1 if ShardMap.virtual_shard(customer_id) < 10 else 0
            assert orders.for_customer(customer_id) is orders.shards[expected]
    finally:
        await platform.close()


def test_adding_a_database_moves_only_the_customers_of_the_moved_range(tmp_path: Path) -> None:
    shards = [sqlite_database(f"orders_{i}", tmp_path / f"orders_{i}.db") for i in range(3)]
    before = ShardedDatabase(shards[:2], ShardMap(2))
    after = ShardedDatabase(shards, ShardMap.parse("0-127=0,128-191=1,192-255=2", 3))
    customers = [new_id() for _ in range(2000)]
    orders = {customer_id: before.new_id(customer_id) for customer_id in customers}

    moved = [c for c in customers if before.for_customer(c) is not after.for_customer(c)]
    assert moved, "some customers hash to the moved range"
    assert all(192 <= ShardMap.virtual_shard(c) < VIRTUAL_SHARDS for c in moved)
    assert all(after.for_customer(c) is shards[2] for c in moved)
    assert {c for c in customers if ShardMap.virtual_shard(c) >= 192} == set(moved)
    for customer_id, order_id in orders.items():
        # an id names its virtual shard, not its database: the new map finds it where it moved
        assert after.for_id(order_id) is after.for_customer(customer_id)
        assert before.for_id(order_id) is before.for_customer(customer_id)
