"""The event bus port and idempotent consumers (the in-process adapter: in_process_bus.py).

Delivery is at least once; the effect is exactly once: a consumer records each event id it
handled in the same transaction as its effect, and skips an event it has already recorded.
A handler that fails is retried with backoff; after the last attempt the message goes to the
consumer database's dead-letter table, where it can be inspected and replayed. A dependency
that is briefly down (`transient`) spends no attempt: its messages wait until it is back.
"""

import asyncio
import random
import time
import traceback
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar, cast

from sqlalchemy import Row, select, update

from bazaar.platform.clock import utcnow
from bazaar.platform.db import Database, WriteSession
from bazaar.platform.events import Envelope, Event, read_event
from bazaar.platform.ids import new_id
from bazaar.platform.observability import (
    CONSUMER_LAG,
    EVENT_HANDLE_TIME,
    EVENTS_HANDLED,
    child_traceparent,
    log,
    traceparent_var,
)
from bazaar.platform.schema import dead_letter, processed_event
from bazaar.platform.statements import insert_ignoring_duplicates
from bazaar.platform.tracing import consuming
from bazaar.platform.transient import is_transient

Handle = Callable[[WriteSession, Envelope], Awaitable[None]]
Notify = Callable[[Envelope], Awaitable[None]]


@dataclass(frozen=True)
class Subscription:
    """One consumer's interest in one event type, and the database its effect lands in.

    A broadcast subscription (no database) runs on every instance, outside any transaction
    and without a record of handled events: its effect must be harmless to repeat, such as
    dropping a cache entry.
    """

    consumer: str
    event_type: str
    handle: Handle | Notify
    """A `Handle` when there is a `database`, a `Notify` for a broadcast."""
    database: Callable[[Envelope], Database] | None
    wanted: Callable[[Envelope], Awaitable[bool]] | None = None
    """A read that tells whether the event concerns the consumer at all (a webhook subscribed
    to its type): when it does not, the event is taken without a transaction of its own, and
    without a record, since it changed nothing to be kept from doing twice."""

    @property
    def is_broadcast(self) -> bool:
        return self.database is None


E = TypeVar("E", bound=Event)


def subscribe(
    consumer: str,
    event_class: type[E],
    handler: Callable[[WriteSession, E], Awaitable[None]],
    database: Database | Callable[[Envelope], Database],
) -> Subscription:
    """Subscribe `handler` to `event_class`; it gets the decoded event in an open transaction."""

    async def handle(session: WriteSession, envelope: Envelope) -> None:
        await handler(session, read_event(envelope, event_class))

    choose = database if callable(database) else (lambda _envelope: database)
    return Subscription(consumer, event_class.event_type, handle, choose)


def broadcast(
    consumer: str, event_class: type[E], handler: Callable[[E], Awaitable[None]]
) -> Subscription:
    """Run `handler` on every instance for each `event_class` event (see Subscription)."""

    async def notify(envelope: Envelope) -> None:
        await handler(read_event(envelope, event_class))

    return Subscription(consumer, event_class.event_type, notify, None)


@dataclass(frozen=True)
class DeadLetter:
    """A message a consumer gave up on: kept for a person to read and replay."""

    consumer: str
    event_id: str
    type: str
    reason: str
    failed_at: datetime | None


@dataclass(frozen=True)
class QueueDepth:
    consumer: str
    ready: int | None
    """Messages waiting for the consumer (None: its queue does not exist yet)."""
    dead: int | None


class EventBus(Protocol):
    confirm_waits_for_consumers: bool
    """True when publish returns only after the consumers handled the messages (in-process);
    False when a broker stores them first (RabbitMQ), so a publisher may hold locks meanwhile."""

    def subscribe(self, subscription: Subscription) -> None: ...

    def retire(self, consumers: Mapping[str, str]) -> None:
        """Take these consumer names (old name: its successor) out of service: when queues are
        declared, what the bus keeps for an old name moves to its successor's, and the old
        name's place goes. A renamed consumer's inbox and dead-letter rows are its service's
        migration to rename."""

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        """Return once the bus has taken responsibility for every envelope (confirmed)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def problem(self) -> str | None:
        """None while the bus carries messages, else what is wrong (for /readyz)."""

    async def declare_queues(self, subscriptions: Iterable[Subscription]) -> None:
        """Make a place for each consumer's messages before it first runs (`bazaar migrate`)."""

    async def queue_depths(self, consumers: Collection[str]) -> list[QueueDepth]:
        """How many messages wait for each consumer, and how many it gave up on."""

    async def dead_letters(self, consumers: Collection[str] | None = None) -> Sequence[DeadLetter]:
        """The messages these consumers (None: every one the bus can find) gave up on, left
        where they are."""

    async def replay_dead_letters(
        self, consumers: Collection[str] | None = None, event_id: str | None = None
    ) -> Sequence[DeadLetter]:
        """Deliver them again (all, or the one with `event_id`); returns those replayed."""


@dataclass(frozen=True)
class RetryPolicy:
    """How a failing handler is retried.

    A transient failure (`platform.transient`: the database restarting, a dropped connection, a
    lock wait that ran out) is retried with backoff for as long as it lasts and never counts
    towards `attempts`: those are the budget of a poison message, one that fails however often
    it is tried, before it is set aside as a dead letter.
    """

    attempts: int = 5
    first_delay: float = 0.05
    max_delay: float = 2.0

    def delay(self, attempt: int) -> float:
        """Seconds before retry number `attempt` + 1, with up to a fifth less as jitter, so
        that handlers failing together do not come back in step."""
        return min(self.max_delay, self.first_delay * 2.0 ** min(attempt, 32)) * (
            1.0 - 0.2 * random.random()
        )


async def deliver(subscription: Subscription, envelope: Envelope, retry: RetryPolicy) -> bool:
    """Handle `envelope` once, with retries; dead-letter it after the last attempt.

    Returns True when handled (now or before), False when dead-lettered. Transient failures are
    retried until they pass (see RetryPolicy); cancelling the caller stops the retrying.
    """
    error = ""
    failures = tries = 0
    while failures < retry.attempts:
        try:
            await apply(subscription, envelope)
            return True
        except Exception as exc:
            transient = is_transient(exc)
            failures += 0 if transient else 1
            error = handler_failed(subscription.consumer, envelope, exc, tries, transient)
            if failures < retry.attempts:
                await asyncio.sleep(retry.delay(tries))
            tries += 1
    if subscription.database is None:
        log.error("broadcast_failed", consumer=subscription.consumer, event_id=envelope.id)
        return False
    await dead_letter_message(subscription, envelope, error, retry.attempts)
    EVENTS_HANDLED.labels(subscription.consumer, "dead_lettered").inc()
    return False


def handler_failed(
    consumer: str, envelope: Envelope, error: BaseException, tries: int, transient: bool
) -> str:
    """Log and count one failed try of `consumer` at `envelope`; returns the error's text."""
    text = "".join(traceback.format_exception_only(error)).strip()
    log.warning(
        "event_handler_failed",
        consumer=consumer,
        event_id=envelope.id,
        type=envelope.type,
        attempt=tries + 1,
        transient=transient,
        error=text,
    )
    EVENTS_HANDLED.labels(consumer, "waited" if transient else "retried").inc()
    return text


async def apply(subscription: Subscription, envelope: Envelope) -> None:
    """Handle `envelope` once: its effect and the record of its id commit together, and an id
    already recorded is skipped. Raises what the handler raised, with nothing committed."""
    traceparent_var.set(child_traceparent(envelope.trace.get("traceparent")))
    started = time.perf_counter()
    with consuming(subscription.consumer, envelope):
        outcome = await _handle_once(subscription, envelope)
    took = time.perf_counter() - started
    EVENT_HANDLE_TIME.labels(subscription.consumer, envelope.type).observe(took)
    EVENTS_HANDLED.labels(subscription.consumer, outcome).inc()
    if outcome != "not_wanted":
        lag = (utcnow() - envelope.occurred_at).total_seconds()
        CONSUMER_LAG.labels(subscription.consumer).set(lag)


async def _handle_once(subscription: Subscription, envelope: Envelope) -> str:
    """`apply`'s work; its outcome: handled, duplicate, or not_wanted."""
    if subscription.wanted is not None and not await subscription.wanted(envelope):
        return "not_wanted"
    if subscription.database is None:  # a broadcast: each instance's own memory, no record
        await cast(Notify, subscription.handle)(envelope)
        return "handled"
    async with subscription.database(envelope).write() as session:
        first_time = await insert_ignoring_duplicates(
            session,
            processed_event,
            consumer=subscription.consumer,
            event_id=envelope.id,
            processed_at=utcnow(),
        )
        if first_time:
            await cast(Handle, subscription.handle)(session, envelope)
    return "handled" if first_time else "duplicate"


async def dead_letter_message(
    subscription: Subscription, envelope: Envelope, error: str, attempts: int
) -> None:
    assert subscription.database is not None
    async with subscription.database(envelope).write() as session:
        await session.execute(
            dead_letter.insert().values(
                id=new_id(),
                consumer=subscription.consumer,
                event_id=envelope.id,
                type=envelope.type,
                envelope=envelope.encode(),
                error=error[:2000],
                attempts=attempts,
                failed_at=utcnow(),
            )
        )
    log.error("event_dead_lettered", consumer=subscription.consumer, event_id=envelope.id)


async def stored_dead_letters(db: Database, consumer: str | None = None) -> list[Row[Any]]:
    """The dead-letter rows of `db` not replayed yet, oldest first."""
    query = select(dead_letter).where(dead_letter.c.replayed_at.is_(None))
    if consumer is not None:
        query = query.where(dead_letter.c.consumer == consumer)
    async with db.read(fresh=True) as session:
        return list((await session.execute(query.order_by(dead_letter.c.failed_at))).all())


async def replay_stored_dead_letters(
    db: Database,
    subscriptions: Sequence[Subscription],
    consumers: Collection[str] | None = None,
    event_id: str | None = None,
    retry: RetryPolicy | None = None,
) -> list[DeadLetter]:
    """Deliver `db`'s dead letters of `consumers` again, here, to their consumer's handler,
    and mark each row replayed (a failure dead-letters it anew); returns those replayed."""
    replayed = []
    for row in await stored_dead_letters(db):
        if consumers is not None and row.consumer not in consumers:
            continue
        if event_id not in (None, row.event_id):
            continue
        for subscription in subscriptions:
            if (subscription.consumer, subscription.event_type) == (row.consumer, row.type):
                await deliver(subscription, Envelope.decode(row.envelope), retry or RetryPolicy())
        async with db.write() as session:
            await session.execute(
                update(dead_letter).where(dead_letter.c.id == row.id).values(replayed_at=utcnow())
            )
        replayed.append(stored_letter(row))
    return replayed


def stored_letter(row: Row[Any]) -> DeadLetter:  # a row of the dead_letter table
    return DeadLetter(
        row.consumer, row.event_id, row.type, row.error.splitlines()[-1], row.failed_at
    )
