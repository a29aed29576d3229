"""What a process of each kind runs, its settings, and orders quoting from the catalog over
HTTP (in process here; tests/integration/test_processes.py runs the real processes)."""

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.trace import SpanKind

from bazaar.orders.catalog_http import HttpCatalogPrices
from bazaar.platform.auth import CUSTOMER, TokenIssuer
from bazaar.platform.errors import Unavailable
from bazaar.platform.keys import KEY_FILE, load_or_create_key
from bazaar.platform.settings import SettingsError
from bazaar.runtime.catalog_prices import EmbeddedCatalogPrices
from bazaar.runtime.config import ProcessKind, Settings
from bazaar.runtime.embedded import Runtime
from bazaar.runtime.processes import settings_for
from bench.otlp import otlp_receiver
from tests.e2e.checkout import create_product, place_order
from tests.plugin import FAST_ENV, admin, started
from tests.served import served


def env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a process on `tmp_path`'s data folder, whose token keys exist (as
    `bazaar migrate` or identity would have made them)."""
    load_or_create_key(tmp_path / "data" / KEY_FILE)
    return {**FAST_ENV, "BAZAAR_DATA_DIR": str(tmp_path / "data"), **extra}


@pytest.mark.parametrize(
    ("kind", "size", "overflow", "timeout", "concurrency"),
    [
        (ProcessKind.DEV, 10, 10, 1.0, 4),
        (ProcessKind.SERVE, 10, 10, 1.0, 4),
        (ProcessKind.WORKER, 5, 5, 5.0, 8),
    ],
)
def test_each_kind_of_process_has_its_pool_and_concurrency(
    tmp_path: Path, kind: ProcessKind, size: int, overflow: int, timeout: float, concurrency: int
) -> None:
    process = Settings.from_env(env(tmp_path), kind=kind).process
    assert (process.pool.size, process.pool.overflow, process.pool.timeout) == (
        size,
        overflow,
        timeout,
    )
    assert process.consumer_concurrency == concurrency < process.pool.capacity


def test_the_pool_settings_override_the_defaults(tmp_path: Path) -> None:
    settings = Settings.from_env(
        env(
            tmp_path,
            BAZAAR_DB_POOL_SIZE="3",
            BAZAAR_DB_MAX_OVERFLOW="0",
            BAZAAR_DB_POOL_TIMEOUT="0.5",
            BAZAAR_CONSUMER_CONCURRENCY="2",
        )
    )
    assert settings.process.pool.capacity == 3 and settings.process.pool.timeout == 0.5
    assert settings.process.consumer_concurrency == 2


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("BAZAAR_CONSUMER_CONCURRENCY", "20"),  # the whole default pool: requests would starve
        ("BAZAAR_DB_POOL_SIZE", "0"),
        ("BAZAAR_CATALOG_URL", "ftp://catalog"),
        ("BAZAAR_BROKER_PREFIX", "a b"),
    ],
)
def test_a_bad_process_setting_names_its_variable(
    tmp_path: Path, variable: str, value: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(env(tmp_path, **{variable: value}))
    assert raised.value.variable == variable


@pytest.mark.parametrize(
    ("kind", "service", "extra", "variable"),
    [
        (ProcessKind.SERVE, "catalog", {}, "BAZAAR_DATABASE_URL"),
        (ProcessKind.WORKER, "catalog", {}, "BAZAAR_DATABASE_URL"),
        (
            ProcessKind.WORKER,
            "orders",
            {"BAZAAR_DATABASE_URL": "postgresql://u@127.0.0.1/bazaar"},
            "BAZAAR_BROKER_URL",
        ),
        (
            ProcessKind.SERVE,
            "orders",
            {"BAZAAR_DATABASE_URL": "postgresql://u@127.0.0.1/bazaar"},
            "BAZAAR_CATALOG_URL",
        ),
    ],
)
def test_serve_and_worker_refuse_what_separate_processes_cannot_share(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    kind: ProcessKind,
    service: str,
    extra: dict[str, str],
    variable: str,
) -> None:
    for name in [name for name in os.environ if name.startswith("BAZAAR_")]:
        monkeypatch.delenv(name)
    for name, value in env(tmp_path, **extra).items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as raised:
        settings_for(kind, service)
    assert raised.value.variable == variable


@contextlib.asynccontextmanager
async def running(settings: Settings, services: list[str]) -> AsyncIterator[Runtime]:
    runtime = Runtime(settings, services=services)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


async def test_serve_runs_its_routes_and_only_the_broadcasts(tmp_path: Path) -> None:
    settings = Settings.from_env(env(tmp_path), kind=ProcessKind.SERVE)
    async with running(settings, ["catalog"]) as runtime:
        assert runtime._subscribed and all(s.is_broadcast for s in runtime._subscribed)
        assert runtime._tasks == []  # no relay, no import worker
        transport = httpx.ASGITransport(app=runtime.app())
        async with httpx.AsyncClient(transport=transport, base_url="http://catalog") as client:
            assert (await client.get("/v1/products")).status_code == 200
            assert (await client.get("/v1/orders")).status_code == 404
            assert (await client.get("/readyz")).status_code == 200


async def test_a_worker_runs_the_consumers_relay_and_loops_but_no_route(tmp_path: Path) -> None:
    settings = Settings.from_env(env(tmp_path), kind=ProcessKind.WORKER)
    async with running(settings, ["catalog"]) as runtime:
        subscribed = runtime._subscribed
        assert subscribed and not any(s.is_broadcast for s in subscribed)
        assert len(runtime._tasks) == 2  # the relay and the import worker
        transport = httpx.ASGITransport(app=runtime.app())
        async with httpx.AsyncClient(transport=transport, base_url="http://worker") as client:
            assert (await client.get("/v1/products")).status_code == 404
            assert (await client.get("/healthz")).status_code == 200


async def test_http_prices_quote_what_the_embedded_ones_do(runtime, client) -> None:
    headers = await admin(runtime, client)
    products = [
        await create_product(client, headers, stock=i + 1, amount=100 + i) for i in range(3)
    ]
    ids = [p["id"] for p in products] + ["unknown"]
    async with served(runtime.app()) as url:
        prices = HttpCatalogPrices(url)
        try:
            over_http = await prices.quote(ids)
        finally:
            await prices.close()
    assert over_http == await EmbeddedCatalogPrices(runtime.platform.databases["catalog"]).quote(
        ids
    )
    assert len(over_http) == 3


async def test_an_ask_of_the_catalog_is_a_client_span_with_the_catalogs_request_under_it(
    tmp_path: Path,
) -> None:
    with otlp_receiver() as (receiver, endpoint):
        async with started(tmp_path / "data", BAZAAR_OTLP_ENDPOINT=endpoint) as runtime:
            assert runtime.tracing is not None
            async with served(runtime.app()) as url:
                prices = HttpCatalogPrices(url)
                try:
                    with runtime.tracing.tracer.start_as_current_span("a cart shown"):
                        assert await prices.quote(["unknown"]) == {}
                finally:
                    await prices.close()
    named = {span.name: span for span in receiver.spans}
    cart, ask, answer = named["a cart shown"], named["GET"], named["GET /v1/products"]
    assert ask.kind == SpanKind.CLIENT.value + 1  # OTLP numbers the kinds from unspecified
    assert ask.attributes["url.full"] == f"{url}/v1/products"
    assert (ask.parent_id, answer.parent_id) == (cart.span_id, ask.span_id)
    assert len({cart.trace_id, ask.trace_id, answer.trace_id}) == 1


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[str]:
    """A catalog that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_silent_catalog_makes_the_quote_unavailable() -> None:
    async with silent_server() as url:
        prices = HttpCatalogPrices(url, timeout=0.3)
        try:
            with pytest.raises(Unavailable):
                async with asyncio.timeout(5):
                    await prices.quote(["a", "b"])
        finally:
            await prices.close()


async def test_orders_answers_503_with_retry_after_when_the_catalog_is_silent(
    tmp_path: Path,
) -> None:
    async with silent_server() as url:
        settings = Settings.from_env(
            env(tmp_path, BAZAAR_CATALOG_URL=url, BAZAAR_CATALOG_TIMEOUT="0.3"),
            kind=ProcessKind.SERVE,
        )
        async with running(settings, ["orders"]) as runtime:
            assert isinstance(runtime.prices, HttpCatalogPrices)
            assert runtime.platform.signing_key is None  # orders verifies, identity signs
            identity_key = load_or_create_key(tmp_path / "data" / KEY_FILE)
            token = TokenIssuer(identity_key, 60).issue("customer-1", CUSTOMER)
            transport = httpx.ASGITransport(app=runtime.app())
            async with httpx.AsyncClient(transport=transport, base_url="http://orders") as client:
                async with asyncio.timeout(5):
                    response = await place_order(
                        client,
                        {"Authorization": f"Bearer {token}"},
                        [{"product_id": "p1", "quantity": 1}],
                    )
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"].startswith("application/problem+json")
