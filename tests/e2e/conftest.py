"""The end-to-end tests run on every backend: SQLite files; the PostgreSQL server; and every
real server at once (a primary with a replica, shards on two servers, Redis, RabbitMQ)."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bazaar.runtime.embedded import Runtime
from tests.plugin import started
from tests.postgres import fresh_database_url, require_server
from tests.scaled import ScaledServers


@pytest.fixture(params=["sqlite", "postgresql", "scaled"])
async def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Runtime]:
    extra: dict[str, str] = {}
    if request.param != "sqlite":
        await require_server()
    if request.param == "postgresql":
        extra["BAZAAR_DATABASE_URL"] = fresh_database_url()
    if request.param == "scaled":
        servers: ScaledServers = request.getfixturevalue("scaled_servers")
        extra = servers.environment()
    async with started(tmp_path / "data", on_servers=request.param != "sqlite", **extra) as runtime:
        yield runtime
