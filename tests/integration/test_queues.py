"""The broker side of separate processes, on the machine's RabbitMQ: queues declared before
their consumer first runs, handlers bounded below the pool, and a clean stop.

Each test uses exchanges and queues under a prefix of its own and deletes them at the end.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import pytest
from sqlalchemy import insert

from bazaar.orders.events import OrderPlaced
from bazaar.platform import schema
from bazaar.platform.bus import subscribe
from bazaar.platform.db import Database, WriteSession
from bazaar.platform.events import Envelope
from bazaar.platform.money import Money
from bazaar.platform.rabbitmq import RabbitMQBus
from bazaar.platform.sqlite import sqlite_database
from bazaar.runtime.embedded import Runtime
from tests.e2e.checkout import eventually
from tests.integration.test_rabbitmq import (
    BROKER_URL,
    CONSUMER,
    ThingHappened,
    bus_for,
    count,
    db,  # noqa: F401 (a fixture)
    effect,
    prefix,  # noqa: F401 (a fixture)
    recording,
    require_broker,
)
from tests.plugin import settings_for


async def queue_length(name: str) -> int:
    connection = await aio_pika.connect(BROKER_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        return queue.declaration_result.message_count or 0


@pytest.fixture
async def broker_runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    """Every service on SQLite files, with RabbitMQ under a prefix of this test's own."""
    await require_broker()
    name = f"test-{uuid.uuid4().hex[:10]}"
    runtime = Runtime(
        settings_for(tmp_path / "data", BAZAAR_BROKER_URL=BROKER_URL, BAZAAR_BROKER_PREFIX=name)
    )
    consumers = {s.consumer for part in runtime.parts for s in part.subscriptions}
    try:
        yield runtime
    finally:
        await runtime.stop()
        await RabbitMQBus(BROKER_URL, prefix=name).delete_topology(consumers)


async def test_migrate_declares_the_queues_so_an_early_event_waits_for_its_consumer(
    broker_runtime: Runtime,
) -> None:
    await broker_runtime.migrate()
    bus = broker_runtime.platform.bus
    assert isinstance(bus, RabbitMQBus)
    placed = OrderPlaced(
        order_id="order-1",
        customer_id="customer-1",
        lines=[],
        total=Money(0, "USD"),
        payment_method="pm_card_visa",
    )
    publisher = RabbitMQBus(BROKER_URL, prefix=bus.prefix)
    await publisher.start()  # a publisher only: it consumes nothing
    try:
        await publisher.publish([Envelope.wrap(placed)])
    finally:
        await publisher.stop()
    reserve = bus.queue_name("catalog.reserve_stock")
    assert await queue_length(reserve) == 1  # kept, though no consumer ever ran

    await broker_runtime.start()  # the consumer's first start: it gets the event
    catalog = broker_runtime.platform.databases["catalog"]

    async def handled() -> bool:
        return await count(catalog, schema.processed_event) >= 1

    await eventually(handled, within=10)
    assert await queue_length(reserve) == 0


async def test_handlers_running_at_once_stay_within_the_concurrency(
    prefix: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    # Four databases, so that SQLite's one writer per file does not bound it first.
    dbs = [sqlite_database(f"d{i}", tmp_path / f"d{i}.db") for i in range(4)]
    for database in dbs:
        async with database.primary.begin() as connection:
            await connection.run_sync(schema.metadata.create_all)
            await connection.run_sync(effect.metadata.create_all)
    running = 0
    most = 0

    async def slowly(session: WriteSession, event: ThingHappened) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.05)
        running -= 1
        await session.execute(insert(effect).values(id=event.thing_id))

    def spread(envelope: Envelope) -> Database:
        return dbs[int(envelope.key.removeprefix("t")) % len(dbs)]

    bus = bus_for(prefix, concurrency=2)
    bus.subscribe(subscribe(CONSUMER, ThingHappened, slowly, spread))
    await bus.start()
    try:
        await bus.publish([Envelope.wrap(ThingHappened(thing_id=f"t{i}")) for i in range(12)])

        async def all_done() -> bool:
            return sum([await count(database, effect) for database in dbs]) == 12

        await eventually(all_done, within=10)
    finally:
        await bus.stop()
        for database in dbs:
            await database.dispose()
    assert most == 2


async def test_stop_lets_a_running_handler_finish_and_acknowledge(
    prefix: str,  # noqa: F811
    db: Database,  # noqa: F811
) -> None:
    started = asyncio.Event()

    async def slowly(_event: ThingHappened) -> None:
        started.set()
        await asyncio.sleep(0.3)

    bus = bus_for(prefix, stop_grace=5.0)
    bus.subscribe(recording(db, slowly))
    await bus.start()
    await bus.publish([Envelope.wrap(ThingHappened(thing_id="held"))])
    await asyncio.wait_for(started.wait(), 5)
    await bus.stop()  # while the handler runs
    assert await count(db, effect) == 1
    assert await queue_length(bus.queue_name(CONSUMER)) == 0


async def test_stop_hands_back_a_message_whose_handler_outlives_the_grace(
    prefix: str,  # noqa: F811
    db: Database,  # noqa: F811
) -> None:
    started = asyncio.Event()

    async def forever(_event: ThingHappened) -> None:
        started.set()
        await asyncio.Event().wait()

    bus = bus_for(prefix, stop_grace=0.2)
    bus.subscribe(recording(db, forever))
    await bus.start()
    await bus.publish([Envelope.wrap(ThingHappened(thing_id="abandoned"))])
    await asyncio.wait_for(started.wait(), 5)
    async with asyncio.timeout(5):
        await bus.stop()
    assert await count(db, effect) == 0  # rolled back

    async def back_in_the_queue() -> bool:
        return await queue_length(bus.queue_name(CONSUMER)) == 1

    await eventually(back_in_the_queue, within=5)
