"""PostgreSQL for the tests: the machine's server, a fresh set of databases per test.

In CI a server that does not answer fails the run; elsewhere the tests that need it are
skipped with a reason that `pytest -ra` prints at the end.
"""

import os
import uuid

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from bazaar.payments.wiring import sandbox_url
from bazaar.platform.postgres import drop_database
from bazaar.runtime.embedded import Runtime

SERVER_URL = os.environ.get("BAZAAR_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")


async def require_server() -> None:
    url = make_url(SERVER_URL)
    try:
        connection = await asyncpg.connect(
            host=url.host,
            port=url.port or 5432,
            user=url.username,
            password=url.password,
            database="postgres",
            timeout=3,
        )
    except (OSError, asyncpg.PostgresError) as error:
        message = f"PostgreSQL at {SERVER_URL} does not answer ({error})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(f"SKIPPED, NOT TESTED: {message}")
    await connection.close()


def fresh_database_url() -> str:
    """A URL naming a database no test uses; services derive theirs from it."""
    name = f"bazaar_test_{uuid.uuid4().hex[:12]}"
    return make_url(SERVER_URL).set(database=name).render_as_string(hide_password=False)


async def drop_databases(runtime: Runtime) -> None:
    """Every database the runtime's services made, the payment sandbox's included."""
    for db in runtime.platform.all_databases():
        await drop_database(db.primary.url)
    await drop_database(make_url(sandbox_url(runtime.platform.databases["payments"])))
