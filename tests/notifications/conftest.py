"""Fixtures of the notifications tests: a migrated notifications database on SQLite."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bazaar.identity.events import UserRegistered
from bazaar.notifications import service
from bazaar.notifications.settings import NotificationsSettings
from bazaar.notifications.wiring import SCHEMA
from bazaar.platform import migrations
from bazaar.platform.db import Database, sqlite_database
from bazaar.platform.settings import Env

FAST = {
    "BAZAAR_MAILER_POLL_INTERVAL": "0.01",
    "BAZAAR_EMAIL_FIRST_DELAY": "0.01",
    "BAZAAR_WEBHOOK_FIRST_DELAY": "0.01",
    "BAZAAR_WEBHOOK_POLL_INTERVAL": "0.01",
    "BAZAAR_WEBHOOK_ATTEMPTS": "3",
    "BAZAAR_WEBHOOK_TIMEOUT": "2",
    "BAZAAR_SMTP_TIMEOUT": "2",
}


@pytest.fixture
def settings() -> NotificationsSettings:
    return NotificationsSettings.from_env(Env(FAST))


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = sqlite_database("notifications", tmp_path / "notifications.db")
    await migrations.upgrade(database, SCHEMA)
    try:
        yield database
    finally:
        await database.dispose()


async def add_recipient(
    db: Database, user_id: str = "user-1", email: str = "ada@example.com", name: str = "Ada"
) -> None:
    async with db.write() as session:
        await service.record_recipient(
            session, UserRegistered(user_id=user_id, email=email, name=name, role="customer")
        )
