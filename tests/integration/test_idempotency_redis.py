"""`Idempotency-Key` with Redis, on real servers: replays and in-flight duplicates answered by
any instance without a database round trip; the database stays the source of truth when Redis
loses its data or stops.

Two instances share SQLite files and the machine's Redis (database 15); every key lives under
a scope of the test's own (a fresh user or a random scope), so runs never collide.
"""

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bazaar.platform.cache import create_cache
from bazaar.platform.db import WriteSession
from bazaar.platform.errors import Conflict, Unprocessable
from bazaar.platform.idempotency import Idempotency, StoredResponse
from bazaar.runtime.embedded import Runtime
from tests.e2e.checkout import settled
from tests.integration.conftest import run_once
from tests.integration.test_redis import RedisServer, running
from tests.orders.test_api import keyed, order_body, product
from tests.plugin import admin, customer
from tests.statements import statements_where

REQUEST_TABLES = ("idempotency_record", "cart_item", "customer_order", "FROM product")


@pytest.fixture
def statements() -> Iterator[list[str]]:
    """Every statement that touches what an order request reads or writes, on any engine."""
    with statements_where(lambda sql: any(table in sql for table in REQUEST_TABLES)) as seen:
        yield seen


async def an_order(runtime: Runtime, client: httpx.AsyncClient) -> tuple[dict, dict]:
    """A customer's headers (with a fresh key) and the body of an order they may place."""
    item = await product(client, await admin(runtime, client))
    headers = keyed(await customer(client))
    return headers, order_body([{"product_id": item, "quantity": 1}])


def scope_of(runtime: Runtime, headers: dict) -> str:
    claims = runtime.platform.verifier.verify(headers["Authorization"].removeprefix("Bearer "))
    return f"orders:{claims.id}"


async def test_a_replay_on_another_instance_is_answered_from_redis(
    redis_url: str, tmp_path: Path, statements: list[str]
) -> None:
    async with (
        running(tmp_path / "data", redis_url) as (runtime, first),
        running(tmp_path / "data", redis_url) as (_other, second),
    ):
        headers, body = await an_order(runtime, first)
        placed = await first.post("/v1/orders", json=body, headers=headers)
        assert placed.status_code == 202, placed.text
        await settled(first, headers, placed.json()["id"])  # the saga's statements are not ours

        statements.clear()
        replayed = await second.post("/v1/orders", json=body, headers=headers)
        assert replayed.status_code == 202
        assert replayed.headers["idempotent-replayed"] == "true"
        assert replayed.content == placed.content
        changed = order_body(body["items"], payment_method="pm_other")
        reused = await second.post("/v1/orders", json=changed, headers=headers)
        assert reused.status_code == 422
        assert statements == []  # no cart, catalog or idempotency read: Redis answered


async def test_a_duplicate_in_flight_on_another_instance_is_409_without_the_database(
    redis_url: str, tmp_path: Path, statements: list[str]
) -> None:
    async with running(tmp_path / "data", redis_url) as (runtime, _client):
        db = runtime.platform.databases["payments"]
        first = runtime.platform.idempotency
        second = Idempotency(create_cache(redis_url))  # another instance's client
        scope, started, finish = f"test:{uuid.uuid4().hex}", asyncio.Event(), asyncio.Event()

        async def slow(_session: WriteSession) -> tuple[int, bytes]:
            started.set()
            await finish.wait()
            return 200, b'{"done": true}'

        async def never(_session: WriteSession) -> tuple[int, bytes]:
            raise AssertionError("a duplicate ran its work")

        try:
            async with asyncio.timeout(10):
                in_flight = asyncio.create_task(run_once(first, db, scope, "k", "fp", slow))
                await started.wait()
                statements.clear()
                with pytest.raises(Conflict):
                    await run_once(second, db, scope, "k", "fp", never)
                with pytest.raises(Unprocessable):
                    await run_once(second, db, scope, "k", "another request", never)
                assert statements == []
                finish.set()
                assert await in_flight == StoredResponse(200, b'{"done": true}', replayed=False)
                statements.clear()
                replay = await run_once(second, db, scope, "k", "fp", never)
                assert replay == StoredResponse(200, b'{"done": true}', replayed=True)
                assert statements == []
        finally:
            assert second.shared is not None
            await second.shared.release(scope, "k")
            await second.shared.cache.close()


async def test_a_replay_lost_by_redis_is_answered_by_the_database_and_copied_back(
    redis_url: str, tmp_path: Path, statements: list[str]
) -> None:
    async with running(tmp_path / "data", redis_url) as (runtime, client):
        headers, body = await an_order(runtime, client)
        placed = await client.post("/v1/orders", json=body, headers=headers)
        assert placed.status_code == 202, placed.text
        shared = runtime.platform.idempotency.shared
        assert shared is not None
        scope, key = scope_of(runtime, headers), headers["Idempotency-Key"]
        await shared.release(scope, key)  # as if Redis had been flushed or had failed over

        replayed = await client.post("/v1/orders", json=body, headers=headers)
        assert replayed.status_code == 202
        assert replayed.headers["idempotent-replayed"] == "true"
        assert replayed.content == placed.content
        assert any("idempotency_record" in statement for statement in statements)
        known = await shared.known(scope, key)
        assert known is not None and known.body == placed.content
        orders = (await client.get("/v1/orders", headers=headers)).json()["items"]
        assert len(orders) == 1


async def test_a_failed_request_frees_its_key_on_every_instance(
    redis_url: str, tmp_path: Path
) -> None:
    async with (
        running(tmp_path / "data", redis_url) as (runtime, first),
        running(tmp_path / "data", redis_url) as (_other, second),
    ):
        headers, body = await an_order(runtime, first)
        empty_cart = order_body()  # no items and nothing in the cart: 422 from the work
        assert (await first.post("/v1/orders", json=empty_cart, headers=headers)).status_code == 422
        placed = await second.post("/v1/orders", json=body, headers=headers)
        assert placed.status_code == 202, placed.text
        assert "idempotent-replayed" not in placed.headers


async def test_idempotent_writes_work_while_redis_is_down(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    async with running(tmp_path / "data", own_redis.url) as (runtime, client):
        headers, body = await an_order(runtime, client)
        await own_redis.stop()
        began = time.monotonic()
        placed = await client.post("/v1/orders", json=body, headers=headers)
        assert placed.status_code == 202, placed.text
        replayed = await client.post("/v1/orders", json=body, headers=headers)
        assert replayed.status_code == 202
        assert replayed.headers["idempotent-replayed"] == "true"
        assert replayed.content == placed.content
        changed = order_body(body["items"], payment_method="pm_other")
        assert (await client.post("/v1/orders", json=changed, headers=headers)).status_code == 422
        assert time.monotonic() - began < 3.0  # the breaker answers at once, no hang

        await own_redis.start()  # empty: the database still knows the key
        deadline = time.monotonic() + 5
        while (await client.get("/readyz")).json()["status"] != "ok":
            assert time.monotonic() < deadline, "readiness did not recover with Redis"
            await asyncio.sleep(0.1)
        again = await client.post("/v1/orders", json=body, headers=headers)
        assert again.status_code == 202
        assert again.content == placed.content
        assert len((await client.get("/v1/orders", headers=headers)).json()["items"]) == 1
