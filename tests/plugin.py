"""The suite's shared fixtures and helpers, one pytest plugin (tests/conftest.py registers
it): an embedded runtime on fresh SQLite files or on every real server, a client, accounts,
and a service's migrated database."""

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from click.testing import Result

from bazaar.platform import migrations
from bazaar.platform.db import Database
from bazaar.platform.migrations import ServiceSchema
from bazaar.platform.sqlite import sqlite_database
from bazaar.runtime.config import Settings
from bazaar.runtime.embedded import Runtime
from tests.postgres import drop_databases
from tests.replication import ReplicatedServer, start_replicated_server
from tests.scaled import ScaledServers, start_scaled_servers

FAST_ENV = {
    "BAZAAR_ARGON2_TIME_COST": "1",
    "BAZAAR_ARGON2_MEMORY_KIB": "64",
    "BAZAAR_LOG_LEVEL": "warning",
}


def settings_for(data_dir: Path, **extra: str) -> Settings:
    return Settings.from_env({**FAST_ENV, "BAZAAR_DATA_DIR": str(data_dir), **extra})


BACKEND = os.environ.get("BAZAAR_TEST_BACKEND", "embedded")
"""What the suite's default runtime stands on: `embedded` (SQLite files, in-process cache and
bus) or `scaled` (every real server at once: tests/scaled.py). `make test` runs the API tests
once more on `scaled`."""


@asynccontextmanager
async def started(
    data_dir: Path, *, on_servers: bool = False, **extra: str
) -> AsyncIterator[Runtime]:
    """A runtime on `extra`'s settings, started and, afterwards, stopped; `on_servers` drops
    the PostgreSQL databases it made as well."""
    runtime = Runtime(settings_for(data_dir, **extra))
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()
        if on_servers:
            await drop_databases(runtime)


@asynccontextmanager
async def migrated(name: str, folder: Path, schema: ServiceSchema) -> AsyncIterator[Database]:
    """A SQLite database `name` in `folder`, migrated to `schema`; disposed of afterwards."""
    db = sqlite_database(name, folder / f"{name}.db")
    await migrations.upgrade(db, schema)
    try:
        yield db
    finally:
        await db.dispose()


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., Result]:
    """`bazaar ARGS...` run in this process as a user runs it, on a fresh data folder and no
    `.env` file: `cli("seed", "--products", "5", stdin=..., BAZAAR_X="...")`."""
    from typer.testing import CliRunner

    from bazaar.cli import app

    runner = CliRunner()
    env = {**FAST_ENV, "BAZAAR_DATA_DIR": str(tmp_path / "data"), "BAZAAR_ENV_FILE": ""}

    def invoke(*args: str, stdin: str | None = None, **extra: str) -> Result:
        return runner.invoke(app, list(args), env={**env, **extra}, input=stdin)

    return invoke


@pytest.fixture
async def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Runtime]:
    extra: dict[str, str] = {}
    if BACKEND == "scaled":
        servers: ScaledServers = request.getfixturevalue("scaled_servers")
        extra = servers.environment()
    async with started(tmp_path / "data", on_servers=BACKEND == "scaled", **extra) as runtime:
        yield runtime


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=runtime.app())
    async with httpx.AsyncClient(transport=transport, base_url="http://bazaar.test") as client:
        yield client


async def register(
    client: httpx.AsyncClient, email: str = "ada@example.com", password: str = "correct horse"
) -> dict:
    response = await client.post(
        "/v1/auth/register", json={"email": email, "password": password, "name": "Ada"}
    )
    assert response.status_code == 201, response.text
    return response.json()


async def login(
    client: httpx.AsyncClient, email: str = "ada@example.com", password: str = "correct horse"
) -> dict:
    response = await client.post("/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return response.json()


async def admin(runtime: Runtime, client: httpx.AsyncClient) -> dict[str, str]:
    """Create an admin (as `bazaar admin create` does) and log in; their headers."""
    from bazaar.identity import service
    from bazaar.identity.wiring import passwords

    async with runtime.platform.databases["identity"].write() as session:
        await service.register_user(
            session,
            passwords(runtime.settings.identity),
            email="admin@example.com",
            password="admin password",
            name="Admin",
            role="admin",
        )
    tokens = await login(client, "admin@example.com", "admin password")
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def customer(client: httpx.AsyncClient, email: str = "ada@example.com") -> dict[str, str]:
    """Register and log in a customer; the headers that authenticate them."""
    await register(client, email)
    tokens = await login(client, email)
    return {"Authorization": f"Bearer {tokens['access_token']}"}


@pytest.fixture(scope="session")
def replicated_postgres() -> Iterator[ReplicatedServer]:
    """A primary and a streaming replica that the suite starts once (tests/replication.py)."""
    yield from start_replicated_server()


@pytest.fixture(scope="session")
def scaled_servers(replicated_postgres: ReplicatedServer) -> Iterator[ScaledServers]:
    """Every real server at once (tests/scaled.py)."""
    yield from start_scaled_servers(replicated_postgres)


async def readiness_once_checked_again(client: httpx.AsyncClient) -> httpx.Response:
    """/readyz after its background checks have run again (at most every 0.5 s)."""
    await client.get("/readyz")  # starts a new round if the last one is old
    await asyncio.sleep(0.7)
    await client.get("/readyz")
    await asyncio.sleep(0.7)
    return await client.get("/readyz")
