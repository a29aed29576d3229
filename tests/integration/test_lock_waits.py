"""A wait for a row lock is bounded too: the request answers 503, it does not hang."""

import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from bazaar.platform.postgres import LOCK_TIMEOUT
from bazaar.runtime.embedded import Runtime
from tests.conftest import admin, settings_for
from tests.e2e.checkout import create_product
from tests.postgres import drop_databases, fresh_database_url, require_server


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    await require_server()
    runtime = Runtime(settings_for(tmp_path / "data", BAZAAR_DATABASE_URL=fresh_database_url()))
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()
        await drop_databases(runtime)


async def test_a_row_held_by_another_transaction_gives_503_after_the_lock_timeout(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    headers = await admin(runtime, client)
    product = await create_product(client, headers, stock=5)
    url = runtime.platform.databases["catalog"].primary.url
    holder = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, database=url.database
    )
    try:
        async with holder.transaction():
            await holder.execute("SELECT 1 FROM product WHERE id = $1 FOR UPDATE", product["id"])
            started = time.monotonic()
            patched = await client.patch(
                f"/v1/products/{product['id']}", json={"stock": 6}, headers=headers
            )
            waited = time.monotonic() - started
    finally:
        await holder.close()

    assert patched.status_code == 503, patched.text
    assert patched.headers["content-type"].startswith("application/problem+json")
    assert patched.headers["retry-after"] == "1"
    assert LOCK_TIMEOUT <= waited < LOCK_TIMEOUT + 3
    after = await client.patch(f"/v1/products/{product['id']}", json={"stock": 6}, headers=headers)
    assert after.status_code == 200, after.text
