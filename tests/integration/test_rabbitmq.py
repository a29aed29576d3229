"""The event bus on the machine's RabbitMQ: confirms, acknowledgement after commit, delivery
limit and dead letters, two relays at once on PostgreSQL, and the checkout end to end.

Each test declares its exchanges and queues under a prefix of its own and deletes them at the
end. In CI a broker that does not answer fails the run; elsewhere these tests are skipped.
"""

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import ClassVar, cast

import aio_pika
import httpx
import pytest
from sqlalchemy import Column, MetaData, String, Table, func, insert, select
from sqlalchemy.engine import make_url

from bazaar.platform import outbox, schema
from bazaar.platform.bus import RetryPolicy, Subscription, broadcast, subscribe
from bazaar.platform.db import Database, WriteSession
from bazaar.platform.events import Envelope, Event
from bazaar.platform.outbox import OutboxRelay
from bazaar.platform.postgres import drop_database, ensure_database, postgres_database
from bazaar.platform.rabbitmq import RabbitMQBus
from bazaar.platform.sqlite import sqlite_database
from bazaar.runtime.embedded import Runtime
from tests.e2e.checkout import eventually
from tests.e2e.test_checkout import test_happy_path_confirms_charges_notifies
from tests.plugin import readiness_once_checked_again, settings_for
from tests.postgres import drop_databases, fresh_database_url, require_server

BROKER_URL = os.environ.get("BAZAAR_TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")
CONSUMER = "test.effects"


async def require_broker() -> None:
    try:
        connection = await aio_pika.connect(BROKER_URL, timeout=3)
    except Exception as error:
        message = f"RabbitMQ at {BROKER_URL} does not answer ({type(error).__name__}: {error})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(f"SKIPPED, NOT TESTED: {message}")
    await connection.close()


class ThingHappened(Event, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "thing.happened"
    source: ClassVar[str] = "test"
    key_field: ClassVar[str] = "thing_id"

    thing_id: str


effects = MetaData()
effect = Table("effect", effects, Column("id", String(36), primary_key=True))


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    await require_broker()
    name = f"test-{uuid.uuid4().hex[:10]}"
    yield name
    await RabbitMQBus(BROKER_URL, prefix=name).delete_topology([CONSUMER])


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = sqlite_database("test", tmp_path / "test.db")
    async with database.primary.begin() as connection:
        await connection.run_sync(schema.metadata.create_all)
        await connection.run_sync(effects.create_all)
    yield database
    await database.dispose()


def bus_for(prefix: str, bus_class: type[RabbitMQBus] = RabbitMQBus, **options) -> RabbitMQBus:
    options.setdefault("retry", RetryPolicy(first_delay=0.01, max_delay=0.05))
    return bus_class(BROKER_URL, prefix=prefix, **options)


def recording(
    db: Database, before: Callable[[ThingHappened], Awaitable[None]] | None = None
) -> Subscription:
    """A subscription whose effect is a row per thing (a second row would fail the insert)."""

    async def handle(session: WriteSession, event: ThingHappened) -> None:
        if before is not None:
            await before(event)
        await session.execute(insert(effect).values(id=event.thing_id))

    return subscribe(CONSUMER, ThingHappened, handle, db)


async def count(db: Database, table: Table) -> int:
    async with db.read() as session:
        return (await session.execute(select(func.count()).select_from(table))).scalar_one()


class CountsAcks(RabbitMQBus):
    acked = 0

    async def acknowledge(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        await super().acknowledge(message)
        self.acked += 1


class DiesBeforeAck(RabbitMQBus):
    """A consumer process that dies between its commit and its acknowledgement."""

    async def acknowledge(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        await asyncio.Event().wait()


async def test_publish_is_confirmed_and_a_consumer_handles_each_event_once(
    prefix: str, db: Database
) -> None:
    bus = bus_for(prefix, CountsAcks)
    bus.subscribe(recording(db))
    await bus.start()
    try:
        envelopes = [Envelope.wrap(ThingHappened(thing_id=f"t{i}")) for i in range(3)]
        await bus.publish(envelopes)
        await bus.publish(envelopes[:1])  # a relay that crashed before marking the row
        await eventually(lambda: _ge(bus, 4))
    finally:
        await bus.stop()
    assert await count(db, effect) == 3
    assert await count(db, schema.processed_event) == 3


async def test_every_instance_takes_every_broadcast_with_no_acknowledgement(
    prefix: str,
) -> None:
    seen: dict[int, list[str]] = {0: [], 1: []}

    def dropping(instance: int) -> Subscription:
        async def drop(event: ThingHappened) -> None:
            seen[instance].append(event.thing_id)

        return broadcast("test.drop_cache", ThingHappened, drop)

    buses = [bus_for(prefix, CountsAcks) for _ in seen]
    for instance, bus in enumerate(buses):
        bus.subscribe(dropping(instance))
        await bus.start()
    try:
        await buses[0].publish([Envelope.wrap(ThingHappened(thing_id=f"t{i}")) for i in range(5)])
        await eventually(lambda: _all_seen(seen, 5))
    finally:
        for bus in buses:
            await bus.stop()
    assert {instance: sorted(ids) for instance, ids in seen.items()} == {
        0: [f"t{i}" for i in range(5)],
        1: [f"t{i}" for i in range(5)],
    }
    assert [cast(CountsAcks, bus).acked for bus in buses] == [0, 0]


async def _all_seen(seen: dict[int, list[str]], count: int) -> bool:
    return all(len(ids) >= count for ids in seen.values())


async def _ge(bus: CountsAcks, acked: int) -> bool:
    return bus.acked >= acked


async def test_a_consumer_killed_before_acknowledging_applies_the_effect_once(
    prefix: str, db: Database
) -> None:
    stuck = asyncio.Event()

    async def hang_in_the_transaction(event: ThingHappened) -> None:
        if event.thing_id == "slow" and not stuck.is_set():
            stuck.set()
            await asyncio.Event().wait()

    dying = bus_for(prefix, DiesBeforeAck, stop_grace=0.1)
    dying.subscribe(recording(db, hang_in_the_transaction))
    await dying.start()
    committed = Envelope.wrap(ThingHappened(thing_id="committed"))
    await dying.publish([committed, Envelope.wrap(ThingHappened(thing_id="slow"))])
    await eventually(lambda: _rows(db, 1))  # committed, not acknowledged
    await stuck.wait()  # the other one is inside its transaction
    await dying.stop()  # the process dies: both messages go back to the queue

    survivor = bus_for(prefix, CountsAcks)
    survivor.subscribe(recording(db, hang_in_the_transaction))
    await survivor.start()
    try:
        await eventually(lambda: _ge(survivor, 2))
    finally:
        await survivor.stop()
    async with db.read() as session:
        ids = (await session.execute(select(effect.c.id).order_by(effect.c.id))).scalars().all()
    assert ids == ["committed", "slow"]


async def _rows(db: Database, expected: int) -> bool:
    return await count(db, effect) >= expected


async def test_a_poison_message_is_dead_lettered_while_others_flow_and_can_be_replayed(
    prefix: str, db: Database
) -> None:
    attempts: list[str] = []
    cured = False

    async def poison(event: ThingHappened) -> None:
        if event.thing_id == "poison":
            attempts.append(event.thing_id)
            if not cured:
                raise ValueError("cannot digest this")

    bus = bus_for(prefix, delivery_limit=2)
    bus.subscribe(recording(db, poison))
    await bus.start()
    try:
        bad = Envelope.wrap(ThingHappened(thing_id="poison"))
        good = [Envelope.wrap(ThingHappened(thing_id=f"good{i}")) for i in range(5)]
        await bus.publish([bad, *good])
        await eventually(lambda: _rows(db, 5))

        async def dead_lettered() -> bool:
            return len(await bus.dead_letters([CONSUMER])) == 1

        await eventually(dead_lettered)
        [letter] = await bus.dead_letters([CONSUMER])
        assert letter.event_id == bad.id and letter.type == "thing.happened"
        assert letter.consumer == CONSUMER and letter.reason == "delivery_limit"
        assert len(attempts) == 3  # the first delivery and two redeliveries
        assert await count(db, effect) == 5

        cured = True
        replayed = await bus.replay_dead_letters([CONSUMER], event_id=bad.id)
        assert [r.event_id for r in replayed] == [bad.id]
        await eventually(lambda: _rows(db, 6))
        assert await bus.dead_letters([CONSUMER]) == []
    finally:
        await bus.stop()


async def test_two_relays_at_once_publish_each_outbox_row_once(prefix: str) -> None:
    await require_server()
    url = fresh_database_url()
    await ensure_database(make_url(url))
    first, second = postgres_database("first", url), postgres_database("second", url)
    buses = [bus_for(prefix), bus_for(prefix)]
    try:
        async with first.primary.begin() as connection:
            await connection.run_sync(schema.metadata.create_all)
        async with first.write() as session:
            for i in range(300):
                outbox.add(session, ThingHappened(thing_id=f"t{i}"))
        await _declare_idle_consumer_queue(prefix)
        for bus in buses:
            await bus.start()
        relays = [OutboxRelay([first], buses[0], 25), OutboxRelay([second], buses[1], 25)]

        async def drain(relay: OutboxRelay, db: Database) -> int:
            total = 0
            while published := await relay.publish_pending(db):
                total += published
            return total

        published = await asyncio.gather(drain(relays[0], first), drain(relays[1], second))
        assert sum(published) == 300 and min(published) > 0
        assert await count(first, schema.outbox_message) == 300
        async with first.read() as session:
            unpublished = select(func.count()).where(schema.outbox_message.c.published_at.is_(None))
            assert (await session.execute(unpublished)).scalar_one() == 0
        assert await _queue_length(prefix) == 300
    finally:
        for bus in buses:
            await bus.stop()
        await first.dispose()
        await second.dispose()
        await drop_database(make_url(url))


async def _declare_idle_consumer_queue(prefix: str) -> None:
    """The consumer's queue exists (its service declared it), but nobody consumes now."""
    bus = bus_for(prefix)
    connection = await aio_pika.connect(BROKER_URL)
    async with connection:
        channel = await connection.channel()
        await channel.declare_exchange(bus.events_exchange, "topic", durable=True)
        queue = await bus.declare_consumer_queue(channel, CONSUMER)
        await queue.bind(bus.events_exchange, routing_key=ThingHappened.event_type)


async def _queue_length(prefix: str) -> int:
    connection = await aio_pika.connect(BROKER_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(f"{prefix}.{CONSUMER}", passive=True)
        return queue.declaration_result.message_count or 0


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    """The whole runtime on PostgreSQL and RabbitMQ (for the checkout below)."""
    await require_broker()
    await require_server()
    settings = settings_for(
        tmp_path / "data", BAZAAR_DATABASE_URL=fresh_database_url(), BAZAAR_BROKER_URL=BROKER_URL
    )
    runtime = Runtime(settings)
    bus = runtime.platform.bus
    assert isinstance(bus, RabbitMQBus)
    bus.prefix = f"test-{uuid.uuid4().hex[:10]}"
    consumers = {s.consumer for part in runtime.parts for s in part.subscriptions}
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()
        await drop_databases(runtime)
        await bus.delete_topology(consumers)


test_the_whole_checkout_on_postgresql_and_rabbitmq = test_happy_path_confirms_charges_notifies


async def test_an_unreachable_broker_stops_the_start_naming_the_variable() -> None:
    from bazaar.platform.settings import SettingsError

    bus = RabbitMQBus("amqp://guest:guest@127.0.0.1:1/", connect_timeout=2)
    with pytest.raises(SettingsError) as raised:
        await bus.start()
    assert raised.value.variable == "BAZAAR_BROKER_URL"


async def test_readiness_says_when_the_broker_is_gone(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    assert (await client.get("/readyz")).status_code == 200
    await runtime.platform.bus.stop()  # as a lost connection leaves it
    ready = await readiness_once_checked_again(client)
    assert ready.status_code == 503
    assert "broker" in ready.text
