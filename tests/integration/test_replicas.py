"""Reads on a streaming replica, with read-your-writes, against a real primary and replica.

The pair comes from tests/replication.py: a primary made with `initdb` and a replica made with
`pg_basebackup -R`, both started by the suite. Pausing the replica's replay (SIGSTOP on its
startup process) makes it answer with old data; pausing every one of its processes makes it
stop answering at all.
"""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text

from bazaar.platform import migrations
from bazaar.platform.loops import cancel_until_done
from bazaar.platform.postgres import ensure_database
from bazaar.runtime.embedded import Runtime
from tests.e2e.checkout import create_product, eventually, place_order
from tests.plugin import admin, customer, settings_for
from tests.postgres import drop_databases
from tests.replication import ReplicatedServer


@pytest.fixture
async def runtime(replicated_postgres: ReplicatedServer, tmp_path: Path) -> AsyncIterator[Runtime]:
    database = f"bazaar_test_{uuid.uuid4().hex[:12]}"
    runtime = Runtime(
        settings_for(
            tmp_path / "data",
            BAZAAR_DATABASE_URL=replicated_postgres.primary.url(database),
            BAZAAR_REPLICA_URLS=replicated_postgres.replica.url(),
            # listings are the reads these tests send to the replica: a cached listing is
            # filled from the primary, as a product page is (the staleness bound)
            BAZAAR_LISTING_CACHE_SECONDS="0",
        )
    )
    await runtime.start()
    try:
        yield runtime
    finally:
        replicated_postgres.resume()
        await runtime.stop()
        await drop_databases(runtime)


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=runtime.app())
    async with httpx.AsyncClient(transport=transport, base_url="http://bazaar.test") as client:
        yield client


def reads(database: str, target: str) -> float:
    """How many read transactions on `database` ran on `target` (replica or primary)."""
    total = 0.0
    for metric in REGISTRY.collect():
        if metric.name != "bazaar_db_reads":
            continue
        for sample in metric.samples:
            labels = sample.labels
            if (
                sample.name == "bazaar_db_reads_total"
                and labels["database"] == database
                and labels["target"] == target
            ):
                total += sample.value
    return total


async def caught_up(server: ReplicatedServer, within: float = 10) -> None:
    """Wait until the replica has replayed everything the primary has written."""
    primary = await asyncpg.connect(server.primary.url())
    replica = await asyncpg.connect(server.replica.url())
    try:
        written = await primary.fetchval("SELECT pg_current_wal_lsn()")
        deadline = time.monotonic() + within
        while await replica.fetchval("SELECT pg_last_wal_replay_lsn()") < written:
            assert time.monotonic() < deadline, "the replica did not catch up"
            await asyncio.sleep(0.05)
    finally:
        await primary.close()
        await replica.close()


async def user_id(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    response = await client.get("/v1/users/me", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["id"]


async def test_a_caught_up_replica_serves_reads(
    runtime: Runtime, client: httpx.AsyncClient, replicated_postgres: ReplicatedServer
) -> None:
    product = await create_product(client, await admin(runtime, client), stock=5)
    await caught_up(replicated_postgres)
    before = reads("catalog", "replica")

    async def served_by_the_replica() -> list[str] | None:
        # the process sees the replica in bounds at its monitor's next poll (every 0.2 s, later
        # on a busy machine): until then the primary serves
        listing = await client.get("/v1/products", params={"q": product["name"]})
        assert listing.status_code == 200
        found = [item["id"] for item in listing.json()["items"]]
        return found if reads("catalog", "replica") > before else None

    assert product["id"] in await eventually(served_by_the_replica)


async def test_a_customer_reads_their_own_writes_while_replay_is_paused(
    runtime: Runtime, client: httpx.AsyncClient, replicated_postgres: ReplicatedServer
) -> None:
    product = await create_product(client, await admin(runtime, client), stock=5)
    headers = await customer(client)
    shard = runtime.platform.orders.for_customer(await user_id(client, headers)).name
    await caught_up(replicated_postgres)
    replicated_postgres.pause_replay()
    on_primary = reads(shard, "primary")

    placed = await place_order(client, headers, [{"product_id": product["id"], "quantity": 1}])
    assert placed.status_code == 202, placed.text
    order_id = placed.json()["id"]
    one = await client.get(f"/v1/orders/{order_id}", headers=headers)
    listed = await client.get("/v1/orders", headers=headers)

    assert one.status_code == 200, one.text
    assert [order["id"] for order in listed.json()["items"]] == [order_id]
    assert reads(shard, "primary") >= on_primary + 2  # the replica has not replayed the order

    replicated_postgres.resume()
    await caught_up(replicated_postgres)
    on_replica = reads(shard, "replica")

    async def served_by_the_replica() -> list[str] | None:
        listed = await client.get("/v1/orders", headers=headers)
        return (
            [order["id"] for order in listed.json()["items"]]
            if reads(shard, "replica") > on_replica
            else None
        )

    assert await eventually(served_by_the_replica) == [order_id]


async def test_a_commit_of_nobody_s_is_never_read_back_older_by_its_process(
    runtime: Runtime, replicated_postgres: ReplicatedServer
) -> None:
    """A consumer's commit learns no position at once; the process's next read does, so it
    still never reads the replica behind its own commit."""
    catalog = runtime.platform.databases["catalog"]

    async def on_the_replica() -> bool:
        async with catalog.read() as session:
            return bool(session.info.get("on_replica"))

    await caught_up(replicated_postgres)
    await eventually(on_the_replica)  # the monitor has seen the replica in bounds
    replicated_postgres.pause_replay()
    event_id = uuid.uuid4().hex
    async with catalog.write() as session:  # no caller: as a consumer's handler writes
        await session.execute(
            text(
                "INSERT INTO processed_event (consumer, event_id, processed_at)"
                " VALUES ('test', :id, now())"
            ),
            {"id": event_id},
        )
    async with catalog.read() as session:
        query = text("SELECT count(*) FROM processed_event WHERE event_id = :id")
        seen = (await session.execute(query, {"id": event_id})).scalar_one()
        on_replica = session.info.get("on_replica")
    assert (seen, on_replica) == (1, None)  # the primary served: the replica is behind

    replicated_postgres.resume()
    await caught_up(replicated_postgres)
    assert await eventually(on_the_replica)


async def test_tables_a_migration_made_are_never_read_on_a_replica_that_lacks_them(
    replicated_postgres: ReplicatedServer, tmp_path: Path
) -> None:
    """A migration is this process's commit too: until the replica has replayed it, the
    process reads on the primary (the replica would say the table does not exist)."""
    database = f"bazaar_test_{uuid.uuid4().hex[:12]}"
    fresh = Runtime(
        settings_for(
            tmp_path / "data",
            BAZAAR_DATABASE_URL=replicated_postgres.primary.url(database),
            BAZAAR_REPLICA_URLS=replicated_postgres.replica.url(),
        )
    )
    catalog = fresh.platform.databases["catalog"]
    (schema,) = [part.schema for part in fresh.parts if part.name == "catalog"]
    assert catalog.replicas is not None
    monitor = asyncio.create_task(catalog.replicas.monitor())
    try:
        await ensure_database(catalog.primary.url)
        await caught_up(replicated_postgres)  # the replica has the database, with no table

        async def on_the_replica() -> bool:
            async with catalog.read() as session:
                await session.execute(text("SELECT 1"))
                return bool(session.info.get("on_replica"))

        assert await eventually(on_the_replica)  # the monitor has seen the replica in bounds
        replicated_postgres.pause_replay()
        await migrations.upgrade(catalog, schema)
        async with catalog.read() as session:
            count = (await session.execute(text("SELECT count(*) FROM product"))).scalar_one()
            on_replica = session.info.get("on_replica")
        assert (count, on_replica) == (0, None)  # the primary served
    finally:
        replicated_postgres.resume()
        await cancel_until_done([monitor])
        await fresh.platform.close()
        await drop_databases(fresh)


async def test_a_frozen_replica_is_skipped_and_taken_back(
    runtime: Runtime, client: httpx.AsyncClient, replicated_postgres: ReplicatedServer
) -> None:
    await create_product(client, await admin(runtime, client), stock=5, category="frozen")
    await caught_up(replicated_postgres)
    replicated_postgres.pause_replica()
    on_primary = reads("catalog", "primary")

    slowest = 0.0
    for attempt in range(10):
        started = time.monotonic()
        listing = await client.get("/v1/products", params={"category": f"frozen-{attempt}"})
        slowest = max(slowest, time.monotonic() - started)
        assert listing.status_code == 200, listing.text
    ready = await client.get("/readyz")

    bound = runtime.platform.databases["catalog"].replicas.check_timeout + 1.0
    assert slowest < bound, f"a read waited {slowest:.2f} s on the frozen replica"
    assert reads("catalog", "primary") >= on_primary + 10
    assert ready.status_code == 200, ready.text  # the primary serves: still ready

    replicated_postgres.resume()
    on_replica = reads("catalog", "replica")

    async def back() -> bool | None:
        await client.get("/v1/products", params={"category": f"back-{uuid.uuid4().hex}"})
        return True if reads("catalog", "replica") > on_replica else None

    assert await eventually(back, within=10)


async def test_a_read_running_when_its_replica_freezes_ends_on_the_primary_within_the_bound(
    runtime: Runtime, client: httpx.AsyncClient, replicated_postgres: ReplicatedServer
) -> None:
    catalog = runtime.platform.databases["catalog"]
    assert catalog.replicas is not None
    await caught_up(replicated_postgres)

    async def on_the_replica() -> bool:
        async with catalog.read() as session:
            return bool(session.info.get("on_replica"))

    # the monitor has seen the replica in bounds (after the suite's earlier tests, the WAL they
    # wrote may keep its lag over the bound a few seconds more: CI once waited past 5 s)
    await eventually(on_the_replica, within=30)
    failed = {"database": "catalog", "target": "primary", "reason": "replica_failed"}
    fell_back = REGISTRY.get_sample_value("bazaar_db_reads_total", failed) or 0

    async def slow_read() -> tuple[float, int, bool]:
        async with catalog.read() as session:
            assert session.info["on_replica"]
            began = time.monotonic()
            # the replica freezes while it sleeps: it never answers this statement
            value = (await session.execute(text("SELECT 7 FROM pg_sleep(0.3)"))).scalar_one()
            return time.monotonic() - began, value, session.info["on_replica"]

    reading = asyncio.create_task(slow_read())
    await asyncio.sleep(0.1)
    replicated_postgres.pause_replica()
    took, value, still_on_replica = await reading

    assert value == 7
    assert not still_on_replica
    assert took < catalog.replicas.check_timeout + 0.8, f"the read took {took:.2f} s"
    assert REGISTRY.get_sample_value("bazaar_db_reads_total", failed) == fell_back + 1
    listing = await client.get("/v1/products", params={"q": "anything"})
    assert listing.status_code == 200  # the frozen replica is skipped from now on


async def test_replica_lag_and_read_share_are_metrics(
    runtime: Runtime, client: httpx.AsyncClient, replicated_postgres: ReplicatedServer
) -> None:
    await client.get("/v1/products")
    replica = f"127.0.0.1:{replicated_postgres.replica.port}"

    async def lag_reported() -> str | None:
        text = (await client.get("/metrics")).text
        wanted = f'bazaar_replica_lag_seconds{{database="catalog",replica="{replica}"}}'
        return text if wanted in text else None

    metrics = await eventually(lag_reported)
    assert 'bazaar_db_reads_total{database="catalog",reason="in_bounds",target="replica"}' in (
        metrics
    )
