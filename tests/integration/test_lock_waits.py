"""A wait for a row lock is bounded too: the request answers 503, it does not hang."""

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bazaar.platform.postgres import LOCK_TIMEOUT
from bazaar.runtime.embedded import Runtime
from tests.e2e.checkout import create_product
from tests.integration.conftest import on_fresh_database
from tests.integration.row_locks import patch_while_held
from tests.plugin import admin


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    async with on_fresh_database(tmp_path / "data") as runtime:
        yield runtime


async def test_a_row_held_by_another_transaction_gives_503_after_the_lock_timeout(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    headers = await admin(runtime, client)
    product = await create_product(client, headers, stock=5)
    url = runtime.platform.databases["catalog"].primary.url
    patched, waited = await patch_while_held(client, headers, product["id"], url)

    assert patched.status_code == 503, patched.text
    assert patched.headers["content-type"].startswith("application/problem+json")
    assert patched.headers["retry-after"] == "1"
    assert LOCK_TIMEOUT <= waited < LOCK_TIMEOUT + 3
    after = await client.patch(f"/v1/products/{product['id']}", json={"stock": 6}, headers=headers)
    assert after.status_code == 200, after.text
