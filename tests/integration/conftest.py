"""The Redis fixtures of test_redis (the machine's server, a server of the test's own), the
broker prefix of test_rabbitmq and the SMTP sink of the mailer's tests, for every integration
test; a runtime on a fresh PostgreSQL database; an idempotent piece of work without a route."""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from bazaar.platform.db import Database, WriteSession
from bazaar.platform.idempotency import Idempotency, Replayed, StoredResponse
from bazaar.platform.unit_of_work import UnitOfWork, at_edge
from bazaar.runtime.embedded import Runtime
from tests.integration.test_rabbitmq import prefix  # noqa: F401
from tests.integration.test_redis import own_redis, redis_url  # noqa: F401
from tests.notifications.test_mailer import smtp_sink  # noqa: F401
from tests.plugin import started
from tests.postgres import fresh_database_url, require_server


@asynccontextmanager
async def on_fresh_database(data_dir: Path) -> AsyncIterator[Runtime]:
    """A runtime on a PostgreSQL database of its own (dropped afterwards)."""
    await require_server()
    database = {"BAZAAR_DATABASE_URL": fresh_database_url()}
    async with started(data_dir, on_servers=True, **database) as runtime:
        yield runtime


async def run_once(
    idempotency: Idempotency,
    db: Database,
    scope: str,
    key: str,
    request_fingerprint: str,
    work: Callable[[WriteSession], Awaitable[tuple[int, bytes]]],
) -> StoredResponse:
    """`work` run at most once for (`scope`, `key`) as a route's request would run it (its
    claim, its unit of work, the edge's commit), or the response it gave replayed."""
    claim = idempotency.claim(scope, key, request_fingerprint)
    unit = UnitOfWork(db, claim=claim)
    try:
        async with at_edge(unit):
            claim.response = await work(await unit.session())
    except Replayed as replay:
        return replay.stored
    status, body = claim.response
    return StoredResponse(status, body, replayed=False)
