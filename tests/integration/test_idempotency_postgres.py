"""An Idempotency-Key on PostgreSQL: the claim lives and dies with the request's transaction.

A duplicate of a request still in flight is 409 after a short wait; a request whose process
died in the middle (its connection dropped, as a SIGKILL drops it) leaves nothing behind, so
its retry runs at once instead of waiting out a minute.
"""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text

from bazaar.platform.db import Database, WriteSession
from bazaar.platform.errors import Conflict
from bazaar.platform.idempotency import CLAIM_WAIT_MS, Idempotency, StoredResponse
from bazaar.platform.postgres import maintenance_connection
from bazaar.runtime.embedded import Runtime
from tests.integration.conftest import on_fresh_database, run_once


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    async with on_fresh_database(tmp_path / "data") as runtime:
        yield runtime


async def backend_pid(session: WriteSession) -> int:
    return (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()


async def test_a_duplicate_in_flight_is_409_after_a_short_wait(runtime: Runtime) -> None:
    db: Database = runtime.platform.databases["payments"]
    idempotency, scope = Idempotency(), f"test:{uuid.uuid4().hex}"
    started_work, finish = asyncio.Event(), asyncio.Event()

    async def slow(_session: WriteSession) -> tuple[int, bytes]:
        started_work.set()
        await finish.wait()
        return 201, b"{}"

    async def never(_session: WriteSession) -> tuple[int, bytes]:
        raise AssertionError("a duplicate ran its work")

    first = asyncio.create_task(run_once(idempotency, db, scope, "k", "fp", slow))
    await started_work.wait()
    began = time.monotonic()
    with pytest.raises(Conflict):
        await run_once(idempotency, db, scope, "k", "fp", never)
    assert time.monotonic() - began < CLAIM_WAIT_MS / 1000 + 1
    finish.set()
    assert await first == StoredResponse(201, b"{}", replayed=False)
    assert await run_once(idempotency, db, scope, "k", "fp", never) == StoredResponse(
        201, b"{}", replayed=True
    )


async def test_a_request_whose_process_died_frees_its_key_at_once(runtime: Runtime) -> None:
    db: Database = runtime.platform.databases["payments"]
    idempotency, scope = Idempotency(), f"test:{uuid.uuid4().hex}"
    pid: list[int] = []
    holding = asyncio.Event()

    async def dies(session: WriteSession) -> tuple[int, bytes]:
        pid.append(await backend_pid(session))
        holding.set()
        await asyncio.sleep(30)  # the process is gone long before
        raise AssertionError("not reached")

    async def work(_session: WriteSession) -> tuple[int, bytes]:
        return 201, b'{"placed": true}'

    dying = asyncio.create_task(run_once(idempotency, db, scope, "k", "fp", dies))
    await holding.wait()
    # what a SIGKILL of the process does to its connection: the server ends its transaction
    admin: asyncpg.Connection = await maintenance_connection(db.primary.url)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid[0])
    finally:
        await admin.close()
    dying.cancel()
    began = time.monotonic()
    while True:
        try:
            stored = await run_once(idempotency, db, scope, "k", "fp", work)
            break
        except Conflict:
            assert time.monotonic() - began < 3, "the dead request's claim locked out its retry"
            await asyncio.sleep(0.1)
    assert stored == StoredResponse(201, b'{"placed": true}', replayed=False)
    (ended,) = await asyncio.gather(dying, return_exceptions=True)
    assert isinstance(ended, BaseException)  # cancelled, or its dropped connection's error
