"""The embedded broker: the event bus port in this process, for `bazaar dev` and the tests."""

import asyncio
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence

from bazaar.platform.bus import (
    DeadLetter,
    QueueDepth,
    RetryPolicy,
    Subscription,
    deliver,
    replay_stored_dead_letters,
    stored_dead_letters,
    stored_letter,
)
from bazaar.platform.db import Database
from bazaar.platform.events import Envelope
from bazaar.platform.loops import cancel_until_done

Delivery = tuple[Subscription, Envelope, asyncio.Future[None]]
"""A message in a consumer's queue, and what its publisher waits on."""


class InProcessBus:
    """The embedded broker: a queue per consumer, worked by a few tasks each.

    It keeps nothing on disk, so it confirms a message only once every consumer has handled
    or dead-lettered it: until then the outbox row stays unpublished and survives a crash.
    """

    confirm_waits_for_consumers = True

    def __init__(
        self,
        retry: RetryPolicy | None = None,
        workers_per_consumer: int = 4,
        stores: Sequence[Database] = (),
    ) -> None:
        self.retry = retry or RetryPolicy()
        self.workers_per_consumer = workers_per_consumer
        self.stores = stores
        """The databases whose dead_letter tables keep what the consumers gave up on."""
        self._by_type: dict[str, list[Subscription]] = defaultdict(list)
        self._queues: dict[str, asyncio.Queue[Delivery]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def subscribe(self, subscription: Subscription) -> None:
        self._by_type[subscription.event_type].append(subscription)
        self._queues.setdefault(subscription.consumer, asyncio.Queue())

    def retire(self, consumers: Mapping[str, str]) -> None:
        pass  # it keeps no message beyond the process: an old name holds nothing

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        loop = asyncio.get_running_loop()
        pending: list[asyncio.Future[None]] = []
        for envelope in envelopes:
            for subscription in self._by_type.get(envelope.type, ()):
                done = loop.create_future()
                self._queues[subscription.consumer].put_nowait((subscription, envelope, done))
                pending.append(done)
        if pending:
            await asyncio.gather(*pending)

    async def start(self) -> None:
        for queue in self._queues.values():
            for _ in range(self.workers_per_consumer):
                self._tasks.append(asyncio.create_task(self._work(queue)))

    async def _work(self, queue: asyncio.Queue[Delivery]) -> None:
        while True:
            subscription, envelope, done = await queue.get()
            try:
                await deliver(subscription, envelope, self.retry)
            except Exception as error:  # not even dead-lettered: the outbox keeps the row
                if not done.done():
                    done.set_exception(error)
            else:
                if not done.done():
                    done.set_result(None)

    async def stop(self) -> None:
        """Cancel the workers (again while any is left: `cancel_until_done`)."""
        await cancel_until_done(self._tasks)
        self._tasks.clear()

    async def problem(self) -> str | None:
        return None  # it is this process

    async def declare_queues(self, subscriptions: Iterable[Subscription]) -> None:
        pass  # its queues live as long as the process: nothing to make beforehand

    async def queue_depths(self, consumers: Collection[str]) -> list[QueueDepth]:
        letters = await self.dead_letters(consumers)
        return [
            QueueDepth(
                consumer,
                self._queues[consumer].qsize() if consumer in self._queues else None,
                sum(1 for letter in letters if letter.consumer == consumer),
            )
            for consumer in sorted(consumers)
        ]

    async def dead_letters(self, consumers: Collection[str] | None = None) -> list[DeadLetter]:
        return [
            stored_letter(row)
            for db in self.stores
            for row in await stored_dead_letters(db)
            if consumers is None or row.consumer in consumers
        ]

    async def replay_dead_letters(
        self, consumers: Collection[str] | None = None, event_id: str | None = None
    ) -> list[DeadLetter]:
        subscriptions = [s for found in self._by_type.values() for s in found]
        replayed = []
        for db in self.stores:
            replayed += await replay_stored_dead_letters(
                db, subscriptions, consumers, event_id, self.retry
            )
        return replayed
