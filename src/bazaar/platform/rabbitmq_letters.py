"""What RabbitMQ holds for a person to look at: each consumer's queue depths and its
dead-lettered messages, which can be replayed (the `EventBus` port's dead-letter side, for
`RabbitMQBus`). Each call uses a connection of its own and closes it."""

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage

from bazaar.platform.bus import DeadLetter, QueueDepth

if TYPE_CHECKING:
    from bazaar.platform.rabbitmq import RabbitMQBus


@dataclass(frozen=True)
class BrokerDeadLetter(DeadLetter):
    """A message in a consumer's dead-letter queue."""

    body: bytes


async def queue_depths(
    bus: "RabbitMQBus", connection: AbstractConnection, consumers: Collection[str]
) -> list[QueueDepth]:
    """Messages ready in each consumer's queue and in its dead-letter queue (passive declares:
    nothing is created; None for a queue not declared yet), on `connection`, closed after."""
    async with connection:
        return await depths_on(bus, connection, consumers)


async def depths_on(
    bus: "RabbitMQBus", connection: AbstractConnection, consumers: Collection[str]
) -> list[QueueDepth]:
    """`queue_depths` on a connection that stays open (the bus's own, measuring its queues)."""
    found = []
    for consumer in sorted(consumers):
        depths: list[int | None] = []
        for name in (bus.queue_name(consumer), bus.dead_letter_queue_name(consumer)):
            channel = await connection.channel()
            try:
                queue = await channel.declare_queue(name, passive=True)
                depths.append(queue.declaration_result.message_count)
            except aio_pika.exceptions.ChannelClosed:
                depths.append(None)
            finally:
                if not channel.is_closed:
                    await channel.close()
        found.append(QueueDepth(consumer, depths[0], depths[1]))
    return found


async def dead_letters(
    bus: "RabbitMQBus", connection: AbstractConnection, consumers: Iterable[str]
) -> list[BrokerDeadLetter]:
    """Every message in the consumers' dead-letter queues, left where it is."""
    found: list[BrokerDeadLetter] = []
    async with connection:
        channel = await connection.channel()
        for consumer in sorted(set(consumers)):
            queue = await bus.declare_dead_letter_queue(channel, consumer)
            while (message := await queue.get(fail=False)) is not None:
                found.append(dead_letter_of(consumer, message))
        # Closing the connection returns every message unacknowledged, in place.
    return found


async def replay(
    bus: "RabbitMQBus",
    connection: AbstractConnection,
    consumers: Iterable[str],
    event_id: str | None = None,
) -> list[BrokerDeadLetter]:
    """Republish dead-lettered messages to their consumer's queue (all, or the one with
    `event_id`), each removed from the dead-letter queue once the broker confirmed it."""
    replayed: list[BrokerDeadLetter] = []
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        for consumer in sorted(set(consumers)):
            await bus.declare_consumer_queue(channel, consumer)
            queue = await bus.declare_dead_letter_queue(channel, consumer)
            while (message := await queue.get(fail=False)) is not None:
                if event_id is not None and message.message_id != event_id:
                    continue  # left unacknowledged: back in place when the channel closes
                await channel.default_exchange.publish(
                    aio_pika.Message(
                        message.body,
                        message_id=message.message_id,
                        type=message.type,
                        content_type=message.content_type,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=bus.queue_name(consumer),
                )
                await message.ack()
                replayed.append(dead_letter_of(consumer, message))
    return replayed


def dead_letter_of(consumer: str, message: AbstractIncomingMessage) -> BrokerDeadLetter:
    headers: dict[str, Any] = dict(message.headers or {})
    deaths = headers.get("x-death") or [{}]
    death = deaths[0] if isinstance(deaths, list | tuple) and deaths else {}
    reason = headers.get("x-first-death-reason") or death.get("reason") or "unknown"
    failed_at = death.get("time") if isinstance(death.get("time"), datetime) else None
    return BrokerDeadLetter(
        consumer=consumer,
        event_id=message.message_id or "",
        type=message.type or "",
        reason=str(reason.decode() if isinstance(reason, bytes) else reason),
        failed_at=failed_at,
        body=message.body,
    )
