"""The event bus on RabbitMQ (aio-pika): durable topic exchange, a quorum queue per consumer.

Topology, every name under one prefix (`bazaar` unless told): the topic exchange
`<prefix>.events` takes every envelope with its type as routing key; each consumer has the
durable quorum queue `<prefix>.<consumer>` bound to the types it subscribes to, with a delivery
limit and the dead-letter exchange `<prefix>.dead-letter`, which routes a message that failed
too often to the consumer's own durable queue `<prefix>.<consumer>.dead-letter`. A broadcast
consumer gets an exclusive, auto-deleted queue per process, so every instance sees every
message (taken with no ack). A message is the envelope's JSON, persistent, its id the envelope's.

Publishing waits for the broker's confirm of every message, so the relay marks an outbox row
published only once RabbitMQ has it. A consumer handles a message as the in-process bus does
(its effect and the record of the event id in one transaction) and acknowledges only after
that transaction committed; a failure is requeued after a short backoff until the quorum
queue's delivery limit dead-letters it, while the other messages keep flowing. A transient
failure (a database restarting, `platform.transient`) is not requeued: the message is held and
retried with backoff until the dependency is back, so an outage spends none of the delivery
limit, which is there for poison messages (a message held past the broker's `consumer_timeout`,
30 minutes by default, is handed back by the broker and counts as a delivery). At most
`concurrency` handlers run at once in a process (each holds a database connection, so this
stays below the pool), and `stop` lets the running ones finish before it hands the rest back.
`declare_queues` creates the consumers' queues ahead of time (`bazaar migrate`), so that an
event published before its consumer first runs is kept; it also moves what the queues of a
retired consumer name hold to its successor's (`retire`, `rabbitmq_retirement`).

A Kafka adapter (aiokafka) would sit beside this one behind the same `EventBus` port: a topic
per event type (or per source) keyed by the envelope key, `publish` awaiting the producer's
acks (`acks="all"`, idempotent producer), a consumer group per consumer name committing
offsets only after the handling transaction committed (the inbox absorbs the redelivery of a
crash between the two), broadcast consumers as a group per process, and, since Kafka has no
delivery limit, a per-message attempt count that moves a poison message to a
`<consumer>.dead-letter` topic instead of blocking its partition.
"""

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
)

from bazaar.platform import rabbitmq_letters as letters
from bazaar.platform import rabbitmq_retirement as retirement
from bazaar.platform.bus import (
    QueueDepth,
    RetryPolicy,
    Subscription,
    apply,
    deliver,
    handler_failed,
)
from bazaar.platform.events import Envelope
from bazaar.platform.loops import cancel_until_done
from bazaar.platform.observability import QUEUE_MESSAGES, log
from bazaar.platform.rabbitmq_letters import BrokerDeadLetter
from bazaar.platform.settings import SettingsError
from bazaar.platform.transient import is_transient

QUEUE_MEASURE_SECONDS = 5.0
"""How often a process measures its consumers' queues (bazaar_queue_messages)."""


class RabbitMQBus:
    """The `EventBus` port on a RabbitMQ server (see the module docstring)."""

    confirm_waits_for_consumers = False

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "bazaar",
        delivery_limit: int = 4,
        concurrency: int = 16,
        prefetch: int | None = None,
        retry: RetryPolicy | None = None,
        connect_timeout: float = 5.0,
        stop_grace: float = 5.0,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.delivery_limit = delivery_limit
        self.concurrency = concurrency
        """Handlers running at once, every consumer of this process together: each holds a
        database connection, so this stays below the pool's capacity."""
        self.prefetch = prefetch or concurrency
        """Unacknowledged messages the broker hands each consumer; more than `concurrency`
        would only wait here while another process could handle them."""
        self.retry = retry or RetryPolicy()
        self.connect_timeout = connect_timeout
        self.stop_grace = stop_grace
        """How long `stop` lets running handlers finish before abandoning them."""
        self._subscriptions: dict[str, list[Subscription]] = defaultdict(list)
        self._retired: dict[str, str] = {}
        """Retired consumer names and their successors (`retire`)."""
        self._connection: AbstractConnection | None = None
        self._exchange: AbstractExchange | None = None
        self._consumers: list[tuple[AbstractQueue, str]] = []
        self._handlers = asyncio.Semaphore(concurrency)
        self._inflight: set[asyncio.Task[Any]] = set()
        self._measuring: asyncio.Task[None] | None = None

    # names ---------------------------------------------------------------------------------
    @property
    def events_exchange(self) -> str:
        return f"{self.prefix}.events"

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.prefix}.dead-letter"

    def queue_name(self, consumer: str) -> str:
        return f"{self.prefix}.{consumer}"

    def dead_letter_queue_name(self, consumer: str) -> str:
        return f"{self.prefix}.{consumer}.dead-letter"

    # the port ------------------------------------------------------------------------------
    def subscribe(self, subscription: Subscription) -> None:
        self._subscriptions[subscription.consumer].append(subscription)

    def retire(self, consumers: Mapping[str, str]) -> None:
        self._retired.update(consumers)

    async def start(self) -> None:
        self._connection = await self._connect(robust=True)
        publisher = await self._connection.channel(publisher_confirms=True)
        self._exchange = await self._declare_exchange(publisher)
        for consumer, subscriptions in self._subscriptions.items():
            channel = await self._connection.channel()
            await channel.set_qos(prefetch_count=self.prefetch)
            queue = await self._declare_subscribed_queue(channel, consumer, subscriptions)
            no_ack = _broadcast_only(subscriptions)  # its queue goes with the process
            tag = await queue.consume(self._callback(consumer), no_ack=no_ack)
            self._consumers.append((queue, tag))
        owned = [c for c, found in self._subscriptions.items() if not _broadcast_only(found)]
        if owned:
            self._measuring = asyncio.create_task(self._measure_queues(sorted(owned)))

    async def declare_queues(self, subscriptions: Iterable[Subscription]) -> None:
        """Declare the durable queue of every consumer among `subscriptions`, bound to its
        event types, so the broker keeps what is published before that consumer first runs
        (`bazaar migrate` does this). Broadcast consumers have no queue until they run.

        Then retire the queues of each retired name (`retire`) whose successor is among them:
        once the successor's queue is bound, what the old queues hold moves there and they go
        (see `rabbitmq_retirement.retire`: idempotent, safe from several processes at once).
        """
        by_consumer: dict[str, list[Subscription]] = defaultdict(list)
        for subscription in subscriptions:
            by_consumer[subscription.consumer].append(subscription)
        connection = await self._connect(robust=False)
        async with connection:
            channel = await connection.channel()
            for consumer, its in by_consumer.items():
                if not _broadcast_only(its):
                    await self._declare_subscribed_queue(channel, consumer, its)
        for old, new in self._retired.items():
            successor = by_consumer.get(new, [])
            # a name still subscribed is no one's to retire: its queue is live
            if successor and not _broadcast_only(successor) and old not in by_consumer:
                event_types = {subscription.event_type for subscription in successor}
                connection = await self._connect(robust=False)
                await retirement.retire(self, connection, old, new, event_types)

    async def _declare_subscribed_queue(
        self, channel: AbstractChannel, consumer: str, subscriptions: Sequence[Subscription]
    ) -> AbstractQueue:
        await self._declare_exchange(channel)
        if _broadcast_only(subscriptions):
            queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        else:
            queue = await self.declare_consumer_queue(channel, consumer)
        for event_type in {subscription.event_type for subscription in subscriptions}:
            await queue.bind(self.events_exchange, routing_key=event_type)
        return queue

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        if not envelopes:
            return
        if self._exchange is None:
            raise RuntimeError("RabbitMQBus.publish before start()")
        exchange = self._exchange
        # Each publish returns once the broker confirmed it; all of them in flight at once.
        await asyncio.gather(
            *(exchange.publish(message_of(e), routing_key=e.type) for e in envelopes)
        )

    async def stop(self) -> None:
        """Stop taking messages, let the running handlers finish for up to `stop_grace`
        seconds, abandon the rest (their transactions roll back), then close the connection:
        the broker gives every unacknowledged message to another consumer."""
        if self._measuring is not None:
            await cancel_until_done([self._measuring])
            self._measuring = None
        for queue, tag in self._consumers:
            # A lost connection has no consumer left to cancel.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await queue.cancel(tag)
        self._consumers.clear()
        running = set(self._inflight)
        if running:
            _done, stuck = await asyncio.wait(running, timeout=self.stop_grace)
            await cancel_until_done(stuck)
            if stuck:
                log.warning("handlers_abandoned_at_stop", count=len(stuck))
        if self._connection is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.connect_timeout):
                    await self._connection.close()
        self._connection = None
        self._exchange = None

    async def problem(self) -> str | None:
        """None while the broker connection is open, else what is wrong (for /readyz)."""
        if self._connection is None or self._connection.is_closed:
            return "broker: not connected"
        return None

    async def _measure_queues(self, consumers: Sequence[str]) -> None:
        """Until `stop`: every QUEUE_MEASURE_SECONDS, the messages in each consumer's queue
        and dead-letter queue (passive declares on a channel of the open connection: nothing
        is created). A round the broker does not answer is skipped: readiness reports it."""
        while True:
            connection = self._connection
            if connection is not None and not connection.is_closed:
                with contextlib.suppress(aio_pika.exceptions.AMQPError, OSError, TimeoutError):
                    async with asyncio.timeout(self.connect_timeout):
                        await self._measure_once(connection, consumers)
            await asyncio.sleep(QUEUE_MEASURE_SECONDS)

    async def _measure_once(self, connection: AbstractConnection, consumers: Sequence[str]) -> None:
        for depth in await letters.depths_on(self, connection, consumers):
            for state, count in (("ready", depth.ready), ("dead", depth.dead)):
                if count is not None:  # a queue not declared yet has no figure
                    QUEUE_MESSAGES.labels(depth.consumer, state).set(count)

    # consuming -----------------------------------------------------------------------------
    def _callback(self, consumer: str) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
        async def on_message(message: AbstractIncomingMessage) -> None:
            await self._on_message(consumer, message)

        return on_message

    async def _on_message(self, consumer: str, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._inflight.add(task)
        try:
            if _broadcast_only(self._subscriptions[consumer]):
                await self._handle(consumer, message)  # no database: nothing to bound
            else:
                async with self._handlers:
                    await self._handle(consumer, message)
        finally:
            self._inflight.discard(task)

    async def _handle(self, consumer: str, message: AbstractIncomingMessage) -> None:
        try:
            envelope = Envelope.decode(message.body)
        except Exception as error:  # not an envelope: no retry can help
            log.error("event_undecodable", consumer=consumer, error=str(error))
            await message.reject(requeue=False)
            return
        subscriptions = [s for s in self._subscriptions[consumer] if s.event_type == envelope.type]
        if any(subscription.is_broadcast for subscription in subscriptions):
            for subscription in subscriptions:
                await deliver(subscription, envelope, self.retry)
            if not _broadcast_only(self._subscriptions[consumer]):  # else taken with no ack
                await self.acknowledge(message)
            return
        tries = 0
        while True:
            try:
                for subscription in subscriptions:
                    await apply(subscription, envelope)
                break
            except Exception as error:
                transient = is_transient(error)
                handler_failed(consumer, envelope, error, tries, transient)
                delivery = _delivery_count(message)
                # Hold the message a moment so a failing handler does not spin; the other
                # messages of the prefetch window keep flowing meanwhile.
                await asyncio.sleep(self.retry.delay(tries if transient else delivery))
                tries += 1
                if not transient:
                    await message.nack(requeue=True)  # one of the poison budget's deliveries
                    return
                # A dependency is down: keep the message and try again, spending nothing of
                # the delivery limit, until it is back or this process stops.
        await self.acknowledge(message)

    async def acknowledge(self, message: AbstractIncomingMessage) -> None:
        """Only after the handling transaction committed: a crash before this redelivers."""
        await message.ack()

    # topology ------------------------------------------------------------------------------
    async def _connect(self, *, robust: bool) -> AbstractConnection:
        connect = aio_pika.connect_robust if robust else aio_pika.connect
        try:
            return await connect(self.url, timeout=self.connect_timeout)
        except (TimeoutError, OSError, aio_pika.exceptions.AMQPError) as error:
            raise SettingsError(
                "BROKER_URL", f"RabbitMQ does not answer ({type(error).__name__}: {error})"
            ) from None

    async def _declare_exchange(self, channel: AbstractChannel) -> AbstractExchange:
        return await channel.declare_exchange(
            self.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )

    async def declare_consumer_queue(
        self, channel: AbstractChannel, consumer: str
    ) -> AbstractQueue:
        """The consumer's quorum queue, its dead-letter exchange and dead-letter queue."""
        await channel.declare_exchange(
            self.dead_letter_exchange, aio_pika.ExchangeType.DIRECT, durable=True
        )
        dead = await self.declare_dead_letter_queue(channel, consumer)
        await dead.bind(self.dead_letter_exchange, routing_key=consumer)
        return await channel.declare_queue(
            self.queue_name(consumer),
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-delivery-limit": self.delivery_limit,
                "x-dead-letter-exchange": self.dead_letter_exchange,
                "x-dead-letter-routing-key": consumer,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            },
        )

    async def declare_dead_letter_queue(
        self, channel: AbstractChannel, consumer: str
    ) -> AbstractQueue:
        # Classic, not quorum: listing returns messages unacknowledged, which a quorum
        # queue would count towards a delivery limit.
        return await channel.declare_queue(self.dead_letter_queue_name(consumer), durable=True)

    async def queue_depths(self, consumers: Collection[str]) -> list[QueueDepth]:
        return await letters.queue_depths(self, await self._connect(robust=False), consumers)

    async def dead_letters(self, consumers: Iterable[str] | None = None) -> list[BrokerDeadLetter]:
        connection = await self._connect(robust=False)
        return await letters.dead_letters(self, connection, self._named(consumers))

    async def replay_dead_letters(
        self, consumers: Iterable[str] | None = None, event_id: str | None = None
    ) -> list[BrokerDeadLetter]:
        connection = await self._connect(robust=False)
        return await letters.replay(self, connection, self._named(consumers), event_id)

    def _named(self, consumers: Iterable[str] | None) -> Iterable[str]:
        """`consumers`, or every subscribed consumer with a queue (broadcasts have none)."""
        if consumers is not None:
            return consumers
        return [c for c, found in self._subscriptions.items() if not _broadcast_only(found)]

    async def delete_topology(self, consumers: Iterable[str]) -> None:
        """Delete the exchanges and queues under this prefix (tests and teardown)."""
        connection = await self._connect(robust=False)
        async with connection:
            channel = await connection.channel()
            for consumer in set(consumers):
                for name in (self.queue_name(consumer), self.dead_letter_queue_name(consumer)):
                    with contextlib.suppress(aio_pika.exceptions.AMQPError):
                        await channel.queue_delete(name)
            for name in (self.events_exchange, self.dead_letter_exchange):
                with contextlib.suppress(aio_pika.exceptions.AMQPError):
                    await channel.exchange_delete(name)


def _delivery_count(message: AbstractIncomingMessage) -> int:
    """How often the broker delivered `message` before (a quorum queue counts it)."""
    count = (message.headers or {}).get("x-delivery-count")
    return count if isinstance(count, int) else 0


def _broadcast_only(subscriptions: Sequence[Subscription]) -> bool:
    return all(subscription.is_broadcast for subscription in subscriptions)


def message_of(envelope: Envelope) -> aio_pika.Message:
    return aio_pika.Message(
        envelope.encode(),
        message_id=envelope.id,
        type=envelope.type,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        timestamp=envelope.occurred_at,
    )
