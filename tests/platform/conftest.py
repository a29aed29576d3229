"""Fixtures of the platform's tests."""

import pytest
from sqlalchemy.engine import make_url

from bazaar.platform.postgres import drop_database, ensure_database
from tests.postgres import fresh_database_url, require_server


@pytest.fixture
async def url():
    """A database of the test's own on the machine's PostgreSQL, dropped afterwards."""
    await require_server()
    url = fresh_database_url()
    await ensure_database(make_url(url))
    yield url
    await drop_database(make_url(url))
