"""Renaming the webhooks' consumer (`notifications-webhooks` to `notifications.webhooks`) loses
nothing in its database: an event handled under the old name is not handled again under the
new one, its dead letters follow it, and a downgrade gives the old name back (SQLite and
PostgreSQL)."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import insert, select
from sqlalchemy.engine import make_url

from bazaar.notifications import handlers
from bazaar.notifications.wiring import SCHEMA
from bazaar.platform import migrations
from bazaar.platform.bus import Subscription, apply, stored_dead_letters
from bazaar.platform.clock import utcnow
from bazaar.platform.db import Database, WriteSession
from bazaar.platform.events import Envelope
from bazaar.platform.ids import new_id
from bazaar.platform.postgres import drop_database, ensure_database, postgres_database
from bazaar.platform.schema import dead_letter, processed_event
from bazaar.platform.sqlite import sqlite_database
from tests.postgres import fresh_database_url, require_server

BEFORE = "5e1f0c2a9b7d"
OLD, NEW = "notifications-webhooks", "notifications.webhooks"


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        database = sqlite_database("notifications", tmp_path / "notifications.db")
        yield database
        await database.dispose()
        return
    await require_server()
    url = make_url(fresh_database_url())
    await ensure_database(url)
    database = postgres_database("notifications", url.render_as_string(hide_password=False))
    try:
        yield database
    finally:
        await database.dispose()
        await drop_database(url)


def envelope() -> Envelope:
    return Envelope(
        id=new_id(),
        type="order.placed",
        version=1,
        occurred_at=utcnow(),
        source="orders",
        key="o",
        trace={},
        data={},
    )


async def inbox(db: Database) -> set[tuple[str, str]]:
    async with db.read() as session:
        query = select(processed_event.c.consumer, processed_event.c.event_id)
        return {(consumer, event_id) for consumer, event_id in await session.execute(query)}


async def test_renamed_consumer_keeps_its_handled_events_and_dead_letters(db: Database) -> None:
    assert handlers.WEBHOOK_CONSUMER == NEW
    await migrations.upgrade(db, SCHEMA, to=f"notifications@{BEFORE}")
    handled, twice, poison, new = envelope(), envelope(), envelope(), envelope()
    before = {
        (OLD, handled.id),
        ("notifications", handled.id),  # another consumer's record of the same event
        (OLD, twice.id),
        (NEW, twice.id),  # a process of the new version handled it before the migration ran
    }
    async with db.write() as session:
        for consumer, event_id in before:
            await session.execute(
                insert(processed_event).values(
                    consumer=consumer, event_id=event_id, processed_at=utcnow()
                )
            )
        await session.execute(
            insert(dead_letter).values(
                id=new_id(),
                consumer=OLD,
                event_id=poison.id,
                type=poison.type,
                envelope=poison.encode(),
                error="ValueError: cannot digest this",
                attempts=5,
                failed_at=utcnow(),
            )
        )

    await migrations.upgrade(db, SCHEMA)

    handled_now: list[str] = []

    async def handle(session: WriteSession, envelope: Envelope) -> None:
        handled_now.append(envelope.id)

    webhooks = Subscription(NEW, "order.placed", handle, lambda _envelope: db)
    for each in (handled, twice, new):
        await apply(webhooks, each)
    assert handled_now == [new.id]
    assert await inbox(db) == {
        (NEW, handled.id),
        ("notifications", handled.id),
        (NEW, twice.id),
        (NEW, new.id),
    }
    [letter] = await stored_dead_letters(db)
    assert (letter.consumer, letter.event_id) == (NEW, poison.id)

    async with db.primary.begin() as connection:
        # no runtime path downgrades: alembic's command, on the runtime's configuration
        await connection.run_sync(
            lambda sync: command.downgrade(migrations._config(sync, SCHEMA), BEFORE)
        )
    assert await inbox(db) == {
        (OLD, handled.id),
        ("notifications", handled.id),
        (OLD, twice.id),
        (OLD, new.id),
    }
    [letter] = await stored_dead_letters(db)
    assert letter.consumer == OLD
