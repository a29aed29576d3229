"""Redis as the shared cache and rate-limit store, on real servers.

The machine's Redis (database 15) carries the shared counters and pages; the outage test runs
a redis-server of its own on a free port, stops it mid-test and starts it again. In CI a Redis
that does not answer fails the run; elsewhere these tests are skipped with a loud reason.
"""

import asyncio
import os
import random
import shutil
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import redis.asyncio as aioredis
from cashews import Cache

from bazaar.catalog.pages import ProductPages
from bazaar.platform.cache import RedisCache, create_cache
from bazaar.platform.db import Database
from bazaar.platform.queries import Query
from bazaar.platform.replicas import UNKNOWN, SharedWritePositions
from bazaar.runtime.embedded import Runtime
from tests.plugin import admin, readiness_once_checked_again, register, settings_for
from tests.statements import statements_where

REDIS_URL = os.environ.get("BAZAAR_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
PRODUCT = {
    "sku": "MUG-1",
    "name": "Blue mug",
    "description": "Holds tea.",
    "category": "kitchen",
    "price": {"amount": 1250, "currency": "USD"},
    "stock": 5,
}


def unavailable(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(f"SKIPPED, NOT TESTED: {message}")


async def answers(url: str) -> bool:
    client = aioredis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(await client.ping())
    except (OSError, aioredis.RedisError):
        return False
    finally:
        await client.aclose()


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    if not await answers(REDIS_URL):
        unavailable(f"Redis at {REDIS_URL} does not answer")
    yield REDIS_URL


@asynccontextmanager
async def running(data_dir: Path, url: str) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    runtime = Runtime(settings_for(data_dir, BAZAAR_REDIS_URL=url))
    await runtime.start()
    # A client address of the test's own: the shared per-IP counters of other runs stay apart
    # (they expire by themselves within the minute).
    address = f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"
    transport = httpx.ASGITransport(app=runtime.app(), client=(address, 1234))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://bazaar.test") as client:
            yield runtime, client
    finally:
        await runtime.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """A redis-server of the test's own, without persistence, stopped and started at will."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        command += ["--daemonize", "no", "--bind", "127.0.0.1"]
        self.process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.DEVNULL
        )
        deadline = time.monotonic() + 5
        while not await answers(self.url):
            assert time.monotonic() < deadline, "redis-server did not start"
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self.process is not None:
            self.process.kill()  # this test's own server, by its PID
            await self.process.wait()
            self.process = None


@pytest.fixture
async def own_redis() -> AsyncIterator[RedisServer]:
    if shutil.which("redis-server") is None:
        unavailable("redis-server is not installed")
    server = RedisServer(free_port())
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def product_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every statement that reads a product row, on any engine or on a driver (a product
    page's read: `Database.rows`, which no engine sees), while the test runs."""

    def reads_a_product(statement: str) -> bool:
        return statement.lstrip().upper().startswith("SELECT") and "FROM product" in statement

    rows = Database._rows

    async def recorded(self: Database, query: Query, params: dict, fresh: bool) -> Any:
        if reads_a_product(str(query.statement)):
            reads.append(str(query.statement))
        return await rows(self, query, params, fresh)

    with statements_where(reads_a_product) as reads:
        monkeypatch.setattr(Database, "_rows", recorded)
        yield reads


async def warm(cache: Cache) -> None:
    for _ in range(3):
        await asyncio.gather(*(cache.get("warm-up") for _ in range(25)))
        if not cache.breaker.is_open:  # type: ignore[attr-defined]
            return
        await asyncio.sleep(2.0)


async def test_fifty_concurrent_misses_on_two_instances_make_one_database_read(
    redis_url: str, tmp_path: Path, product_reads: list[str]
) -> None:
    async with running(tmp_path / "data", redis_url) as (runtime, client):
        response = await client.post(
            "/v1/products", json=PRODUCT, headers=await admin(runtime, client)
        )
        product_id = response.json()["id"]
        await asyncio.sleep(0.3)  # the product.updated event has dropped the (absent) page
        # A second instance: its own cache client and single flight, the same Redis.
        other = ProductPages(create_cache(redis_url), ttl=1.0)
        # Connections opened before the burst: on a loaded machine, opening many at once could
        # outlast the short timeouts, and the breaker would (rightly) send reads to the database.
        await warm(runtime.platform.cache)
        await warm(other.cache)
        db = runtime.platform.databases["catalog"]

        async def load():
            from bazaar.catalog import service

            async with db.read() as session:
                return await service.get_product(session, product_id)

        product_reads.clear()
        answers_ = await asyncio.gather(
            *(client.get(f"/v1/products/{product_id}") for _ in range(25)),
            *(other.fetch(product_id, load) for _ in range(25)),
        )
        await other.cache.close()

    assert [r.status_code for r in answers_[:25]] == [200] * 25
    assert {page.etag for page in answers_[25:]} == {answers_[0].headers["etag"]}
    assert len(product_reads) == 1


async def test_login_failures_are_counted_across_instances(redis_url: str, tmp_path: Path) -> None:
    async with (
        running(tmp_path / "a", redis_url) as (_a, first),
        running(tmp_path / "b", redis_url) as (_b, second),
    ):
        wrong = {"email": f"nobody-{uuid.uuid4().hex}@example.com", "password": "wrong password"}
        statuses = [(await first.post("/v1/auth/login", json=wrong)).status_code for _ in range(3)]
        statuses += [
            (await second.post("/v1/auth/login", json=wrong)).status_code for _ in range(2)
        ]
        assert statuses == [401] * 5
        # Five failures in all: both instances now refuse that email.
        assert (await first.post("/v1/auth/login", json=wrong)).status_code == 429
        assert (await second.post("/v1/auth/login", json=wrong)).status_code == 429


async def test_a_change_on_one_instance_is_seen_on_another_within_the_bound(
    redis_url: str, tmp_path: Path
) -> None:
    # Two instances on one catalog database (the same SQLite files) and the same Redis.
    async with (
        running(tmp_path / "data", redis_url) as (runtime, first),
        running(tmp_path / "data", redis_url) as (_other, second),
    ):
        headers = await admin(runtime, first)
        product_id = (await first.post("/v1/products", json=PRODUCT, headers=headers)).json()["id"]
        assert (await second.get(f"/v1/products/{product_id}")).json()["name"] == "Blue mug"
        changed = await first.patch(
            f"/v1/products/{product_id}", json={"name": "Red mug"}, headers=headers
        )
        assert changed.status_code == 200, changed.text
        changed_at = time.monotonic()
        while (await second.get(f"/v1/products/{product_id}")).json()["name"] != "Red mug":
            assert time.monotonic() - changed_at < 1.0, "a stale page outlived the bound"
            await asyncio.sleep(0.02)


async def test_a_callers_write_position_is_known_to_every_instance(redis_url: str) -> None:
    caches = [create_cache(redis_url) for _ in range(2)]
    assert all(isinstance(cache, RedisCache) for cache in caches)
    first, second = (SharedWritePositions(cast(RedisCache, cache)) for cache in caches)
    caller, other = uuid.uuid4().hex, uuid.uuid4().hex
    try:
        assert await second.recall("orders", caller) is None
        await first.remember("orders", caller, 5_000)
        assert await second.recall("orders", caller) == 5_000
        assert await second.recall("catalog", caller) is None  # per database
        await second.remember("orders", caller, 7_000)
        assert await first.recall("orders", caller) == 7_000
        key = f"lsn:orders:{caller}"
        assert 55_000 < await first.cache.plain.pttl(key) <= 60_000
        # a value that is no position (another version's): unknown, so the primary serves
        await first.cache.plain.set(f"lsn:orders:{other}", b"\x80\x04K\x05.")
        assert await second.recall("orders", other) == UNKNOWN
    finally:
        for cache in caches:
            await cache.close()


async def test_the_keys_asked_for_together_are_read_in_one_round_trip(redis_url: str) -> None:
    cache = create_cache(redis_url)
    assert isinstance(cache, RedisCache)
    reads: list[list[str]] = []
    mget = cache.plain.mget

    async def counted(keys: list[str]) -> list[bytes | None]:
        reads.append(keys)
        return await mget(keys)

    cache.plain.mget = counted  # type: ignore[method-assign,assignment]
    prefix = f"test:{uuid.uuid4().hex}"
    try:
        await cache.set_text(f"{prefix}:a", "1", 5)
        await cache.set_text(f"{prefix}:b", "2", 5)
        asked = [f"{prefix}:{name}" for name in ("a", "b", "a", "none")]
        assert await asyncio.gather(*map(cache.get_text, asked)) == ["1", "2", "1", None]
        assert reads == [[f"{prefix}:a", f"{prefix}:b", f"{prefix}:none"]]
        assert await cache.get_text(f"{prefix}:b") == "2"  # later: a read of its own
        assert len(reads) == 2
    finally:
        await cache.close()


async def test_a_callers_write_position_is_unknown_while_redis_is_unavailable() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))  # bound, not listening: a connection is refused
        cache = create_cache(f"redis://127.0.0.1:{unused.getsockname()[1]}/0")
        assert isinstance(cache, RedisCache)
        positions = SharedWritePositions(cache)
        try:
            await positions.remember("orders", "caller", 5_000)  # kept in this process
            assert cache.breaker.is_open
            assert await positions.recall("orders", "caller") == UNKNOWN
        finally:
            await cache.close()


async def test_a_redis_outage_degrades_reads_and_logins_but_leaves_the_instance_ready(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    async with running(tmp_path / "data", own_redis.url) as (runtime, client):
        product_id = (
            await client.post("/v1/products", json=PRODUCT, headers=await admin(runtime, client))
        ).json()["id"]
        await asyncio.sleep(0.1)
        assert (await client.get(f"/v1/products/{product_id}")).status_code == 200
        key = f"catalog:product:{product_id}"
        assert await runtime.platform.cache.get(key) is not None
        assert (await client.get("/readyz")).status_code == 200

        await own_redis.stop()
        began = time.monotonic()
        for _ in range(20):
            listing = await client.get("/v1/products")
            assert listing.status_code == 200
        await asyncio.sleep(1.0)  # past the edge cache's bound: the next read needs a cache
        page = await client.get(f"/v1/products/{product_id}")
        assert page.status_code == 200
        assert page.json()["name"] == "Blue mug"
        # Only a cache: the instance stays in rotation, and says what it does without.
        ready = await readiness_once_checked_again(client)  # checks run every 0.5 s
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "degraded"
        assert any("redis" in problem for problem in ready.json()["degraded"])
        # The login limiter fails open instead of waiting on the dead server.
        await register(client, "ada@example.com", "correct horse")
        login = {"email": "ada@example.com", "password": "correct horse"}
        assert (await client.post("/v1/auth/login", json=login)).status_code == 200
        assert time.monotonic() - began < 3.0

        await own_redis.start()
        deadline = time.monotonic() + 5
        while (await client.get("/readyz")).json()["status"] != "ok":
            assert time.monotonic() < deadline, "readiness did not recover with Redis"
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # the edge entry expires: the next read fills Redis again
        assert (await client.get(f"/v1/products/{product_id}")).status_code == 200
        assert await runtime.platform.cache.get(key) is not None


async def test_a_redis_that_only_times_out_leaves_the_instance_ready(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    """A timeout cannot tell a slow Redis from a process starved of CPU (an instance saturated
    under its quota): reads go to the database, but readiness stays 200, or every busy
    instance would be taken out of rotation in turn."""
    async with running(tmp_path / "data", own_redis.url) as (runtime, client):
        product_id = (
            await client.post("/v1/products", json=PRODUCT, headers=await admin(runtime, client))
        ).json()["id"]
        assert (await client.get("/readyz")).status_code == 200
        assert own_redis.process is not None
        own_redis.process.send_signal(signal.SIGSTOP)  # this test's own server
        try:
            await asyncio.sleep(1.0)  # past the edge cache's bound: the read asks Redis
            began = time.monotonic()
            page = await client.get(f"/v1/products/{product_id}")
            assert page.status_code == 200
            assert time.monotonic() - began < 1.5
            assert runtime.platform.cache.breaker.is_open
            ready = await readiness_once_checked_again(client)
            assert ready.status_code == 200, ready.text
        finally:
            own_redis.process.send_signal(signal.SIGCONT)
