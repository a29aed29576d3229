"""Retiring a consumer name on RabbitMQ (for `RabbitMQBus`): what the old name's queue and
dead-letter queue hold moves to its successor's, and the old queues go. Each call uses a
connection of its own and closes it."""

from collections.abc import Collection
from typing import TYPE_CHECKING

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage
from aiormq.exceptions import ChannelLockedResource

from bazaar.platform.observability import log

if TYPE_CHECKING:
    from bazaar.platform.rabbitmq import RabbitMQBus

ROUNDS = 3
"""Times a queue is drained and found not empty yet before it is left to a later declare."""


async def retire(
    bus: "RabbitMQBus",
    connection: AbstractConnection,
    old: str,
    new: str,
    event_types: Collection[str],
) -> None:
    """Move what consumer `old`'s queues hold to consumer `new`'s, then delete them. `new`'s
    queue must be declared and bound to `event_types` already (`declare_queues` does it
    first), so that nothing published meanwhile goes unrouted.

    The old queue is unbound from `event_types` first, so that no new copy arrives. Each
    message is acknowledged there only once the broker confirmed its copy (body, headers,
    properties and routing key as they were) in the successor's queue: a crash in between
    leaves a duplicate for the inbox to skip, never a loss. The old queue goes once it is empty
    and has no consumer (a process of the old version still consuming keeps it for a later
    declare), and its dead-letter queue only after it, since it dead-letters there.

    Idempotent (queues already gone: nothing to do) and safe from several processes at once:
    an exclusive queue serves as a lock held by one connection, and a process that finds it
    taken leaves the work to its holder.
    """
    async with connection:
        lock = await connection.channel()
        try:
            await lock.declare_queue(f"{bus.queue_name(old)}.retiring", exclusive=True)
        except ChannelLockedResource:
            log.info("consumer_retirement_elsewhere", consumer=old, successor=new)
            return
        moves = [
            (bus.queue_name(old), bus.queue_name(new), event_types),
            (bus.dead_letter_queue_name(old), bus.dead_letter_queue_name(new), ()),
        ]
        for source, target, bound_to in moves:
            if not await _move(bus, connection, source, target, bound_to):
                return


async def _move(
    bus: "RabbitMQBus",
    connection: AbstractConnection,
    source: str,
    target: str,
    bound_to: Collection[str],
) -> bool:
    """Unbind queue `source` from `bound_to`, move its messages to queue `target`, and delete
    it once empty and unused; True when `source` is gone."""
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    try:
        queue = await channel.declare_queue(source, passive=True)
    except aio_pika.exceptions.ChannelNotFoundEntity:
        return True  # retired before, or never declared
    for event_type in bound_to:
        await queue.unbind(bus.events_exchange, routing_key=event_type)
    successor = await channel.declare_queue(target, passive=True)
    # A fanout exchange bound to the successor alone delivers each copy with its routing key.
    into = await channel.declare_exchange(
        f"{source}.moving", aio_pika.ExchangeType.FANOUT, durable=False, auto_delete=True
    )
    await successor.bind(into)
    moved = 0
    for _round in range(ROUNDS):
        while (message := await queue.get(fail=False)) is not None:
            # mandatory: a successor gone meanwhile fails the publish instead of dropping it
            await into.publish(copy_of(message), message.routing_key or "", mandatory=True)
            await message.ack()
            moved += 1
        left = (await channel.declare_queue(source, passive=True)).declaration_result
        if left.consumer_count:
            log.warning("consumer_retirement_waits", queue=source, consumers=left.consumer_count)
            return False
        if not left.message_count:
            await channel.queue_delete(source)
            await into.delete()
            log.info("consumer_queue_retired", queue=source, successor=target, moved=moved)
            return True
    log.warning("consumer_retirement_waits", queue=source, messages=left.message_count)
    return False


def copy_of(message: AbstractIncomingMessage) -> aio_pika.Message:
    """`message` as it was published, less `user_id` (the broker would refuse one that is not
    this connection's user)."""
    return aio_pika.Message(
        message.body,
        headers=message.headers,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        delivery_mode=message.delivery_mode,
        priority=message.priority,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        expiration=message.expiration,
        message_id=message.message_id,
        timestamp=message.timestamp,
        type=message.type,
        app_id=message.app_id,
    )
