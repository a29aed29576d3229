"""The transactional outbox and its relay.

A use case records an event with `outbox.add(session, event)` in the same transaction as the
change it announces. The relay publishes unpublished rows to the bus and marks them published
only after the bus confirmed them, so an event is never lost; it may be published twice after
a crash, which idempotent consumers absorb.
"""

import asyncio
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, bindparam, func, select, update

from bazaar.platform.bus import EventBus
from bazaar.platform.clock import utcnow
from bazaar.platform.db import Database, WriteSession, insert_at_commit, signal_after_commit
from bazaar.platform.events import Envelope, Event
from bazaar.platform.jobs import claiming
from bazaar.platform.loops import Waker
from bazaar.platform.observability import OUTBOX_BACKLOG, log
from bazaar.platform.queries import Query
from bazaar.platform.schema import outbox_message
from bazaar.platform.statements import run
from bazaar.platform.tracing import publishing


def add(session: WriteSession, event: Event) -> Envelope:
    """Record `event` for publication when, and only if, this transaction commits (its row
    is written with the transaction's other events, `insert_at_commit`)."""
    envelope = Envelope.wrap(event)
    row = {
        "id": envelope.id,
        "type": envelope.type,
        "key": envelope.key,
        "envelope": envelope.encode(),
        "created_at": envelope.occurred_at,
    }
    insert_at_commit(session, outbox_message, row)
    signal_after_commit(session, "outbox")
    return envelope


class OutboxRelay:
    """Publishes the outbox rows of some databases, woken after each commit that wrote one."""

    def __init__(self, databases: Sequence[Database], bus: EventBus, batch_size: int = 200) -> None:
        self.databases = list(databases)
        self.bus = bus
        self.batch_size = batch_size

    async def run(self, poll_interval: float = 1.0) -> None:
        await asyncio.gather(*(self._relay(db, poll_interval) for db in self.databases))

    async def _relay(self, db: Database, poll_interval: float) -> None:
        waker = Waker(poll_interval)
        db.listen("outbox", waker.wake)
        async with db.woken_by_others("outbox", waker.wake):  # rows the API's processes wrote
            await self._publish_while_woken(db, waker)

    async def _publish_while_woken(self, db: Database, waker: Waker) -> None:
        while True:
            try:
                published = await self.publish_pending(db)
            except Exception as error:  # a broker or database hiccup: try again shortly
                log.warning("outbox_relay_failed", database=db.name, error=str(error))
                published = 0
            if published < self.batch_size:
                await waker.wait()

    async def publish_pending(self, db: Database) -> int:
        """Publish one batch of `db`'s outbox; returns how many rows it published.

        Two ways, chosen by the bus and the database:
        - A broker that stores messages before confirming (RabbitMQ) in front of PostgreSQL:
          claim the rows with `FOR UPDATE SKIP LOCKED`, publish, and mark them in that same
          transaction, so several relays at once each publish a row once, and a row is marked
          only after the broker confirmed it.
        - Otherwise (the in-process bus, or SQLite, which has one relay): read the rows and mark
          them in two short transactions, not one held open while the bus confirms: an
          in-process consumer may need this same database to handle them.
        """
        if db.dialect == "postgresql" and not self.bus.confirm_waits_for_consumers:
            return await self._claim_and_publish(db)
        rows = await db.rows(_UNPUBLISHED, {"limit": self.batch_size}, fresh=True)
        if not rows:
            OUTBOX_BACKLOG.labels(db.name).set(0)
            return 0
        envelopes = [Envelope.decode(envelope) for _id, envelope in rows]
        with publishing(envelopes):
            await self.bus.publish(envelopes)
        async with db.write(bookkeeping=True) as session:
            await _mark_published(session, [row_id for row_id, _envelope in rows])
        await self._record_backlog(db, len(rows))
        return len(rows)

    async def _claim_and_publish(self, db: Database) -> int:
        async with db.write(bookkeeping=True) as session:
            rows = (await run(session, _CLAIM, {"limit": self.batch_size})).rows
            if rows:
                envelopes = [Envelope.decode(envelope) for _id, envelope in rows]
                with publishing(envelopes):
                    await self.bus.publish(envelopes)
                await _mark_published(session, [row_id for row_id, _envelope in rows])
        await self._record_backlog(db, len(rows))
        return len(rows)

    async def _record_backlog(self, db: Database, published: int) -> None:
        # A short batch emptied the outbox as of its read: count only behind a full one.
        full = published == self.batch_size
        OUTBOX_BACKLOG.labels(db.name).set(await backlog(db) if full else 0)


async def backlog(db: Database) -> int:
    [(count,)] = await db.rows(_BACKLOG, {}, fresh=True)
    return int(count)


def _unpublished(limit: Any) -> Select[tuple[str, bytes]]:
    return (
        select(outbox_message.c.id, outbox_message.c.envelope)
        .where(outbox_message.c.published_at.is_(None))
        .order_by(outbox_message.c.id)
        .limit(limit)
    )


_UNPUBLISHED = Query(_unpublished(bindparam("limit")))
_CLAIM = Query(claiming(_unpublished(bindparam("limit"))))
_BACKLOG = Query(select(func.count()).where(outbox_message.c.published_at.is_(None)))


async def _mark_published(session: WriteSession, ids: list[str]) -> None:
    await run(session, _MARK_PUBLISHED, {"ids": ids, "now": utcnow()})


_MARK_PUBLISHED = Query(
    update(outbox_message)
    .where(outbox_message.c.id.in_(bindparam("ids", expanding=True)))
    .values(published_at=bindparam("now"))
)
