"""A product row held by another transaction while a request needs it (the lock-wait tests)."""

import time

import asyncpg
import httpx
from sqlalchemy.engine import URL


async def patch_while_held(
    client: httpx.AsyncClient, headers: dict[str, str], product_id: str, holder_url: URL
) -> tuple[httpx.Response, float]:
    """PATCH the product while a connection to `holder_url` holds its row `FOR UPDATE`; the
    answer and how long it took."""
    holder = await asyncpg.connect(
        host=holder_url.host,
        port=holder_url.port or 5432,
        user=holder_url.username,
        database=holder_url.database,
    )
    try:
        async with holder.transaction():
            await holder.execute("SELECT 1 FROM product WHERE id = $1 FOR UPDATE", product_id)
            started = time.monotonic()
            patched = await client.patch(
                f"/v1/products/{product_id}", json={"stock": 6}, headers=headers
            )
            return patched, time.monotonic() - started
    finally:
        await holder.close()
