"""The outbox, the relay and the in-process bus: at-least-once delivery, exactly-once effect,
retries, dead letters."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import ClassVar

import pytest
from sqlalchemy import func, select

from bazaar.platform import outbox, schema
from bazaar.platform.bus import RetryPolicy, broadcast, subscribe
from bazaar.platform.db import Database, WriteSession
from bazaar.platform.events import Event
from bazaar.platform.in_process_bus import InProcessBus
from bazaar.platform.outbox import OutboxRelay
from bazaar.platform.sqlite import sqlite_database


class ThingHappened(Event, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "thing.happened"
    source: ClassVar[str] = "test"
    key_field: ClassVar[str] = "thing_id"

    thing_id: str


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = sqlite_database("test", tmp_path / "test.db")
    async with database.primary.begin() as connection:
        await connection.run_sync(schema.metadata.create_all)
    yield database
    await database.dispose()


async def count(db: Database, table) -> int:
    async with db.read() as session:
        return (await session.execute(select(func.count()).select_from(table))).scalar_one()


async def test_an_event_is_published_only_if_its_transaction_commits(db: Database) -> None:
    async with db.write() as session:
        outbox.add(session, ThingHappened(thing_id="kept"))
    with pytest.raises(RuntimeError):
        async with db.write() as session:
            outbox.add(session, ThingHappened(thing_id="lost"))
            raise RuntimeError("the use case failed")
    assert await count(db, schema.outbox_message) == 1


async def test_relay_delivers_and_consumer_handles_each_event_once(db: Database) -> None:
    seen: list[str] = []

    async def handle(_session: WriteSession, event: ThingHappened) -> None:
        seen.append(event.thing_id)

    bus = InProcessBus()
    bus.subscribe(subscribe("test.collect", ThingHappened, handle, db))
    relay = OutboxRelay([db], bus)
    await bus.start()
    try:
        async with db.write() as session:
            envelope = outbox.add(session, ThingHappened(thing_id="a"))
        assert await relay.publish_pending(db) == 1
        assert await relay.publish_pending(db) == 0  # marked published
        await bus.publish([envelope])  # a broker may deliver twice
    finally:
        await bus.stop()
    assert seen == ["a"]


async def test_a_failing_handler_is_retried_then_succeeds(db: Database) -> None:
    attempts = 0

    async def flaky(_session: WriteSession, _event: ThingHappened) -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise ConnectionError("downstream hiccup")

    bus = InProcessBus(RetryPolicy(attempts=5, first_delay=0.001))
    bus.subscribe(subscribe("test.flaky", ThingHappened, flaky, db))
    await bus.start()
    try:
        async with db.write() as session:
            envelope = outbox.add(session, ThingHappened(thing_id="b"))
        await bus.publish([envelope])
    finally:
        await bus.stop()
    assert attempts == 3
    assert await count(db, schema.dead_letter) == 0


async def test_a_poison_message_is_dead_lettered_and_others_flow(db: Database) -> None:
    handled: list[str] = []

    async def picky(_session: WriteSession, event: ThingHappened) -> None:
        if event.thing_id == "poison":
            raise ValueError("cannot handle this one")
        handled.append(event.thing_id)

    bus = InProcessBus(RetryPolicy(attempts=3, first_delay=0.001))
    bus.subscribe(subscribe("test.picky", ThingHappened, picky, db))
    relay = OutboxRelay([db], bus)
    await bus.start()
    try:
        async with db.write() as session:
            for thing in ("ok-1", "poison", "ok-2"):
                outbox.add(session, ThingHappened(thing_id=thing))
        await asyncio.wait_for(relay.publish_pending(db), 5)
    finally:
        await bus.stop()
    assert sorted(handled) == ["ok-1", "ok-2"]
    async with db.read() as session:
        letters = (await session.execute(select(schema.dead_letter))).all()
    assert [(row.consumer, row.attempts) for row in letters] == [("test.picky", 3)]
    assert "cannot handle this one" in letters[0].error
    # the failed attempt's effects were rolled back, including the processed-event record
    assert await count(db, schema.processed_event) == 2


async def test_a_broadcast_runs_without_a_transaction_or_a_record(db: Database) -> None:
    dropped: list[str] = []

    async def drop(event: ThingHappened) -> None:
        dropped.append(event.thing_id)

    bus = InProcessBus()
    bus.subscribe(broadcast("test.drop_cache", ThingHappened, drop))
    await bus.start()
    try:
        async with db.write() as session:
            envelope = outbox.add(session, ThingHappened(thing_id="c"))
        await bus.publish([envelope, envelope])
    finally:
        await bus.stop()
    assert dropped == ["c", "c"]  # harmless to repeat, so not deduplicated
    assert await count(db, schema.processed_event) == 0
