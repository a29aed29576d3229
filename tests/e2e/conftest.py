"""The end-to-end tests run on both backends: SQLite files, and the PostgreSQL server."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bazaar.runtime.embedded import Runtime
from tests.conftest import settings_for
from tests.postgres import drop_databases, fresh_database_url, require_server


@pytest.fixture(params=["sqlite", "postgresql"])
async def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Runtime]:
    on_postgres = request.param == "postgresql"
    extra: dict[str, str] = {}
    if on_postgres:
        await require_server()
        extra["BAZAAR_DATABASE_URL"] = fresh_database_url()
    runtime = Runtime(settings_for(tmp_path / "data", **extra))
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()
        if on_postgres:
            await drop_databases(runtime)
