"""The Redis fixtures of test_redis (the machine's server, a server of the test's own), the
broker prefix of test_rabbitmq and the SMTP sink of the mailer's tests, for every integration
test; a runtime on a fresh PostgreSQL database."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

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
