"""The fault proxies relay a real server's protocol, and cut, slow or blackhole it on command."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from bazaar.runtime.cluster.faultproxy import (
    FaultProxyError,
    RouteSpec,
    plan,
    serve,
    set_mode,
    wait_listening,
)
from bazaar.runtime.cluster.topology import free_port
from tests.scaled import REDIS_URL


@pytest.fixture
async def proxied(tmp_path: Path) -> AsyncIterator[tuple[Path, int]]:
    """A proxy to the machine's Redis; its control socket and listening port."""
    upstream = int(REDIS_URL.rsplit(":", 1)[1].split("/")[0])
    control, port = tmp_path / "faultproxy.sock", free_port()
    task = asyncio.create_task(serve([RouteSpec("redis", port, upstream)], control))
    await asyncio.to_thread(wait_listening, control)
    yield control, port
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def client(port: int, timeout: float = 2.0) -> redis.Redis:
    """Without retries: each fault shows at once."""
    return redis.Redis(
        port=port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


async def command(control: Path, *words: object) -> None:
    await asyncio.to_thread(set_mode, control, *words)


async def test_passes_then_cuts_then_passes_again(proxied: tuple[Path, int]) -> None:
    control, port = proxied
    connection = client(port)
    assert await connection.ping()
    await command(control, "redis", "cut")
    with pytest.raises(redis.ConnectionError):
        await connection.ping()
    with pytest.raises(redis.ConnectionError):
        await client(port).ping()
    await command(control, "redis", "pass")
    assert await client(port).ping()
    await connection.aclose()


async def test_slow_delays_each_way_and_blackhole_holds_until_healed(
    proxied: tuple[Path, int],
) -> None:
    control, port = proxied
    connection = client(port, timeout=5)
    await connection.ping()
    await command(control, "redis", "slow", 200)
    began = time.monotonic()
    assert await connection.ping()
    assert time.monotonic() - began >= 0.4  # the request's chunk and the answer's
    await command(control, "redis", "blackhole")
    with pytest.raises(redis.TimeoutError):
        await client(port, timeout=0.5).ping()
    held = asyncio.create_task(connection.set("faultproxy-test", "1"))
    await asyncio.sleep(0.3)
    assert not held.done()
    await command(control, "redis", "pass")
    assert await asyncio.wait_for(held, 2)
    await connection.delete("faultproxy-test")
    await connection.aclose()


async def test_a_bad_command_is_refused(proxied: tuple[Path, int]) -> None:
    control, _port = proxied
    with pytest.raises(FaultProxyError, match="NAME one of redis"):
        await command(control, "postgres", "cut")


def test_the_plan_routes_each_server_on_loopback_and_leaves_the_others() -> None:
    ports = iter(range(9001, 9100))
    routes, environment = plan(
        {
            "BAZAAR_DATABASE_URL": "postgresql://bazaar:pw@127.0.0.1:5433/bazaar?sslmode=disable",
            "BAZAAR_REPLICA_URLS": "postgresql://127.0.0.1:5434/bazaar,postgresql://db:5/bazaar",
            "BAZAAR_REDIS_URL": "redis://127.0.0.1:6380/0",
            "BAZAAR_BROKER_URL": "amqp://guest:guest@localhost:5673/",
            "BAZAAR_SMTP_URL": "smtp://127.0.0.1:2525",
        },
        lambda: next(ports),
    )
    assert [str(route) for route in routes] == [
        "postgres=9001:5433",
        "replica-1=9002:5434",
        "redis=9003:6380",
        "rabbitmq=9004:5673",
    ]
    assert environment["BAZAAR_DATABASE_URL"] == (
        "postgresql://bazaar:pw@127.0.0.1:9001/bazaar?sslmode=disable"
    )
    assert environment["BAZAAR_REPLICA_URLS"] == (
        "postgresql://127.0.0.1:9002/bazaar,postgresql://db:5/bazaar"
    )
    assert environment["BAZAAR_BROKER_URL"] == "amqp://guest:guest@localhost:9004/"
    assert environment["BAZAAR_SMTP_URL"] == "smtp://127.0.0.1:2525"
