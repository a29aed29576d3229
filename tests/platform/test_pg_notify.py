"""A commit in one process wakes the outbox relay of another at once (NOTIFY / LISTEN), on the
real PostgreSQL server: the relay here polls only every 30 s."""

import asyncio
import time
from collections.abc import Sequence
from typing import ClassVar

import pytest

from bazaar.platform import outbox, schema
from bazaar.platform.bus import Subscription
from bazaar.platform.events import Envelope, Event
from bazaar.platform.outbox import OutboxRelay
from bazaar.platform.postgres import postgres_database


class ThingHappened(Event, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "thing.happened"
    source: ClassVar[str] = "test"
    key_field: ClassVar[str] = "thing_id"

    thing_id: str


class RecordingBus:
    """A bus that keeps what it is given (the relay's wake-up is under test, not a broker)."""

    confirm_waits_for_consumers = False

    def __init__(self) -> None:
        self.published: list[tuple[float, Envelope]] = []
        self.given = asyncio.Event()

    def subscribe(self, subscription: Subscription) -> None:
        raise AssertionError("nothing subscribes here")

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        self.published += [(time.monotonic(), envelope) for envelope in envelopes]
        self.given.set()

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def test_a_commit_elsewhere_wakes_the_relay_and_a_rollback_does_not(url: str) -> None:
    api, worker = postgres_database("api", url), postgres_database("worker", url)
    async with api.primary.begin() as connection:
        await connection.run_sync(schema.metadata.create_all)
    bus = RecordingBus()
    relay = asyncio.create_task(OutboxRelay([worker], bus).run(poll_interval=30))
    try:
        await asyncio.sleep(1)  # listening, and past the wake-up that comes with connecting
        with pytest.raises(RuntimeError):
            async with api.write() as session:
                outbox.add(session, ThingHappened(thing_id="rolled back"))
                raise RuntimeError("the request fails")
        committed_at = time.monotonic()
        async with api.write() as session:
            outbox.add(session, ThingHappened(thing_id="committed"))

        async with asyncio.timeout(5):
            await bus.given.wait()
    finally:
        relay.cancel()
        await asyncio.gather(relay, return_exceptions=True)
        await api.dispose()
        await worker.dispose()

    assert [envelope.key for _, envelope in bus.published] == ["committed"]
    assert bus.published[0][0] - committed_at < 2  # not the 30 s poll
