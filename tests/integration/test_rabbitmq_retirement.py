"""Retiring a consumer name on the machine's RabbitMQ (`RabbitMQBus.retire`): what the old
name's queue and dead-letter queue hold reaches the successor unchanged, the old queues go, a
second declare (or two at once) changes nothing more, and a process of the old version still
consuming keeps its queue, unbound, until a later declare.

Each test declares its exchanges and queues under a prefix of its own and deletes them at the
end.
"""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import pytest
from sqlalchemy import insert, select

from bazaar.platform import schema
from bazaar.platform.bus import Subscription, subscribe
from bazaar.platform.db import Database, WriteSession
from bazaar.platform.events import Envelope
from bazaar.platform.rabbitmq import RabbitMQBus, message_of
from bazaar.platform.sqlite import sqlite_database
from tests.e2e.checkout import eventually
from tests.integration.test_rabbitmq import (
    BROKER_URL,
    ThingHappened,
    bus_for,
    count,
    effect,
    effects,
    require_broker,
)

OLD, NEW = "test-webhooks", "test.webhooks"


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    await require_broker()
    name = f"test-{uuid.uuid4().hex[:10]}"
    yield name
    bus = RabbitMQBus(BROKER_URL, prefix=name)
    await bus.delete_topology([OLD, NEW])
    connection = await aio_pika.connect(BROKER_URL)
    async with connection:
        for queue in (bus.queue_name(OLD), bus.dead_letter_queue_name(OLD)):
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.exchange_delete(f"{queue}.moving")


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = sqlite_database("test", tmp_path / "test.db")
    async with database.primary.begin() as connection:
        await connection.run_sync(schema.metadata.create_all)
        await connection.run_sync(effects.create_all)
    yield database
    await database.dispose()


def recording(consumer: str, db: Database) -> Subscription:
    async def handle(session: WriteSession, event: ThingHappened) -> None:
        await session.execute(insert(effect).values(id=event.thing_id))

    return subscribe(consumer, ThingHappened, handle, db)


def renamed(prefix: str, db: Database) -> tuple[RabbitMQBus, Subscription]:
    """A bus of the new version: the consumer is NEW, and OLD is retired for it."""
    bus = bus_for(prefix)
    bus.retire({OLD: NEW})
    return bus, recording(NEW, db)


async def publish(prefix: str, envelopes: list[Envelope]) -> None:
    publisher = bus_for(prefix)
    await publisher.start()
    try:
        await publisher.publish(envelopes)
    finally:
        await publisher.stop()


async def dead_letter_as_the_broker_does(prefix: str, consumer: str, envelope: Envelope) -> None:
    """`envelope` in `consumer`'s dead-letter queue, as the delivery limit leaves it."""
    bus = bus_for(prefix)
    message = message_of(envelope)
    message.headers = {
        "x-first-death-reason": "delivery_limit",
        "x-death": [
            {
                "reason": "delivery_limit",
                "queue": bus.queue_name(consumer),
                "exchange": bus.events_exchange,
                "routing-keys": [envelope.type],
                "count": 1,
            }
        ],
    }
    connection = await aio_pika.connect(BROKER_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(bus.dead_letter_exchange)
        await exchange.publish(message, routing_key=consumer, mandatory=True)


async def exists(queue: str) -> bool:
    connection = await aio_pika.connect(BROKER_URL)
    async with connection:
        channel = await connection.channel()
        try:
            await channel.declare_queue(queue, passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return False
        return True


async def waiting(queue: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """The messages in `queue`, left there (unacknowledged, back in place at the close)."""
    found = []
    connection = await aio_pika.connect(BROKER_URL)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        while (message := await declared.get(fail=False)) is not None:
            found.append(message)
    return found


async def test_a_retired_consumers_messages_and_dead_letters_reach_its_successor(
    prefix: str, db: Database
) -> None:
    await bus_for(prefix).declare_queues([recording(OLD, db)])  # the old version's topology
    envelopes = [Envelope.wrap(ThingHappened(thing_id=f"t{i}")) for i in range(5)]
    await publish(prefix, envelopes)
    poison = Envelope.wrap(ThingHappened(thing_id="poison"))
    await dead_letter_as_the_broker_does(prefix, OLD, poison)

    bus, subscription = renamed(prefix, db)
    await bus.declare_queues([subscription])

    assert not await exists(bus.queue_name(OLD))
    assert not await exists(bus.dead_letter_queue_name(OLD))
    moved = await waiting(bus.queue_name(NEW))
    assert [m.message_id for m in moved] == [e.id for e in envelopes]
    assert {(m.type, m.routing_key, m.content_type) for m in moved} == {
        ("thing.happened", "thing.happened", "application/json")
    }
    assert [Envelope.decode(m.body) for m in moved] == envelopes
    [letter] = await bus.dead_letters([NEW])
    assert (letter.event_id, letter.type) == (poison.id, poison.type)
    assert letter.reason == "delivery_limit"

    await bus.declare_queues([subscription])  # a second declare: nothing left to do
    [depth] = await bus.queue_depths([NEW])
    assert (depth.ready, depth.dead) == (5, 1)
    assert not await exists(bus.queue_name(OLD))

    bus.subscribe(subscription)
    await bus.start()
    try:
        await eventually(lambda: _rows(db, 5))
    finally:
        await bus.stop()
    async with db.read() as session:
        consumers = (await session.execute(select(schema.processed_event.c.consumer))).scalars()
        assert set(consumers) == {NEW}


async def test_two_processes_retiring_at_once_move_each_message_once(
    prefix: str, db: Database
) -> None:
    await bus_for(prefix).declare_queues([recording(OLD, db)])
    envelopes = [Envelope.wrap(ThingHappened(thing_id=f"t{i}")) for i in range(200)]
    await publish(prefix, envelopes)

    first, second = renamed(prefix, db), renamed(prefix, db)
    await asyncio.gather(*(bus.declare_queues([s]) for bus, s in (first, second)))

    bus = first[0]
    assert not await exists(bus.queue_name(OLD))
    moved = [m.message_id for m in await waiting(bus.queue_name(NEW))]
    assert sorted(moved) == sorted(e.id for e in envelopes)


async def test_a_retired_queue_still_consumed_is_unbound_and_kept_until_a_later_declare(
    prefix: str, db: Database
) -> None:
    old = bus_for(prefix)
    old.subscribe(recording(OLD, db))
    await old.start()  # a worker of the old version, still running during the upgrade
    try:
        bus, subscription = renamed(prefix, db)
        await bus.declare_queues([subscription])
        assert await exists(bus.queue_name(OLD))
        await publish(prefix, [Envelope.wrap(ThingHappened(thing_id="after"))])
        [depth] = await bus.queue_depths([NEW])
        assert depth.ready == 1  # only the successor's queue is bound now
        assert await count(db, effect) == 0
    finally:
        await old.stop()

    await bus.declare_queues([subscription])
    assert not await exists(bus.queue_name(OLD))
    assert not await exists(bus.dead_letter_queue_name(OLD))


async def _rows(db: Database, expected: int) -> bool:
    return await count(db, effect) >= expected
