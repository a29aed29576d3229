"""Reading orders: one order, a customer's own, on their shard, and every customer's, merged
across the shards for an admin."""

import asyncio
import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice

from sqlalchemy import bindparam, select, tuple_

from bazaar.orders.models import Order, OrderItem
from bazaar.orders.prices import PricedLine
from bazaar.platform.db import Database, ReadSession, WriteSession
from bazaar.platform.money import Money
from bazaar.platform.queries import Query

Session = ReadSession | WriteSession


@dataclass(frozen=True, slots=True)
class OrderView:
    """An order as read, not to be changed: what `Order` shows, without the ORM's cost."""

    id: str
    customer_id: str
    status: str
    cancel_reason: str | None
    items: list[PricedLine]
    total: Money
    payment_id: str | None
    created_at: datetime
    updated_at: datetime


_orders, _items = Order.__table__, OrderItem.__table__
_ONE_ORDER = Query(
    select(
        _orders.c.id,
        _orders.c.customer_id,
        _orders.c.status,
        _orders.c.cancel_reason,
        _orders.c.total_amount,
        _orders.c.currency,
        _orders.c.payment_id,
        _orders.c.created_at,
        _orders.c.updated_at,
        _items.c.line,
        _items.c.product_id,
        _items.c.quantity,
        _items.c.unit_price_amount,
        _items.c.currency,
    )
    .outerjoin(_items, _items.c.order_id == _orders.c.id)
    .where(_orders.c.id == bindparam("order_id"))
    .order_by(_items.c.line)
)


async def one_order(db: Database, order_id: str) -> OrderView | None:
    """The order and its lines in one statement, on the driver itself where it can
    (`Database.rows_by_id`): the most frequent read of a customer, while they wait for their
    order to settle."""
    rows = await db.rows_by_id(_ONE_ORDER, {"order_id": order_id})
    if not rows:
        return None
    id_, customer_id, status, reason, amount, currency, payment_id, created, updated = rows[0][:9]
    return OrderView(
        id=id_,
        customer_id=customer_id,
        status=status,
        cancel_reason=reason,
        items=[
            PricedLine(product_id, quantity, Money(price, price_currency))
            for *_, line, product_id, quantity, price, price_currency in rows
            if line is not None
        ],
        total=Money(amount, currency),
        payment_id=payment_id,
        created_at=created,
        updated_at=updated,
    )


async def list_orders(
    session: Session, customer_id: str, limit: int, before: str | None
) -> list[Order]:
    """Up to `limit + 1` of a customer's orders, newest first (ids are time-ordered)."""
    query = select(Order).where(Order.customer_id == customer_id)
    if before is not None:
        query = query.where(Order.id < before)
    query = query.order_by(Order.id.desc()).limit(limit + 1)
    return list((await session.scalars(query)).all())


def newest_first(order: Order) -> tuple[datetime, str]:
    """The admin listing's sort key, descending: unique, since ids are."""
    return order.created_at, order.id


async def list_shard_orders(
    session: Session,
    limit: int,
    after: tuple[datetime, str] | None,
    *,
    status: str | None = None,
    customer_id: str | None = None,
) -> list[Order]:
    """Up to `limit + 1` orders of one shard, newest first by `newest_first`, all strictly
    older than `after`."""
    query = select(Order)
    if after is not None:
        query = query.where(tuple_(Order.created_at, Order.id) < after)
    if status is not None:
        query = query.where(Order.status == status)
    if customer_id is not None:
        query = query.where(Order.customer_id == customer_id)
    query = query.order_by(Order.created_at.desc(), Order.id.desc()).limit(limit + 1)
    return list((await session.scalars(query)).all())


async def list_all_orders(
    shards: Sequence[Session],
    limit: int,
    after: tuple[datetime, str] | None,
    *,
    status: str | None = None,
    customer_id: str | None = None,
) -> list[Order]:
    """Up to `limit + 1` orders across `shards` (a session on each), newest first.

    Each shard is asked at once for its own first `limit + 1` after `after`: the first
    `limit + 1` of all of them are among those, so merging the sorted lists is exact, and the
    unique sort key leaves no gap or repeat between pages, equal timestamps included.
    """
    async with asyncio.TaskGroup() as group:
        queries = [
            group.create_task(
                list_shard_orders(session, limit, after, status=status, customer_id=customer_id)
            )
            for session in shards
        ]
    merged = heapq.merge(*(query.result() for query in queries), key=newest_first, reverse=True)
    return list(islice(merged, limit + 1))
