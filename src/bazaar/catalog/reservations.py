"""Stock reservations for the checkout saga: all of an order's lines, or none.

Each line is taken with one conditional UPDATE (`stock >= quantity`), so concurrent orders
for the last units can never oversell, whatever the database's isolation level; when any
line cannot be had, the lines already taken are given back in the same transaction (each
row stays locked by it meanwhile, so no one else saw them taken). Statements run on the
driver (platform/statements.py).
"""

from collections import Counter
from collections.abc import Iterable
from enum import StrEnum
from typing import cast

from sqlalchemy import Table, bindparam, select, update

from bazaar.catalog.events import (
    ProductUpdated,
    ReservedLine,
    StockRejected,
    StockReleased,
    StockReserved,
)
from bazaar.catalog.models import Product, StockReservation
from bazaar.orders.events import OrderCancelled, OrderPlaced
from bazaar.platform import outbox
from bazaar.platform.clock import utcnow
from bazaar.platform.db import WriteSession
from bazaar.platform.queries import Query
from bazaar.platform.statements import insert_instances, run


class ReservationStatus(StrEnum):
    """Where an order's stock stands in catalog."""

    RESERVED = "reserved"
    REJECTED = "rejected"
    RELEASED = "released"
    CANCELLED = "cancelled"
    """The tombstone of an order cancelled before catalog saw it placed."""


def aggregate_lines(lines: Iterable[tuple[str, int]]) -> list[ReservedLine]:
    """One line per product with the summed quantity, ordered by product id (the order the
    rows are locked in, so two orders never wait on each other in opposite orders)."""
    totals: Counter[str] = Counter()
    for product_id, quantity in lines:
        totals[product_id] += quantity
    return [ReservedLine(product_id, totals[product_id]) for product_id in sorted(totals)]


async def reserve_stock(session: WriteSession, order: OrderPlaced) -> StockReservation | None:
    """Take the stock of every line of `order`, or none, and say which happened.

    Records `stock.reserved` (with what payments needs) or `stock.rejected` (with the products
    that fell short). Does nothing for an order already seen (reserved, rejected) or already
    cancelled (its tombstone). Returns the reservation record, or None when nothing was done.
    """
    if (await run(session, _SEEN, {"order_id": order.order_id})).rows:
        return None
    lines = aggregate_lines((line.product_id, line.quantity) for line in order.lines)
    now = utcnow()
    taken: list[ReservedLine] = []
    short = []
    for line in lines:
        params = {"product_id": line.product_id, "quantity": line.quantity, "now": now}
        if line.quantity > 0 and (await run(session, _TAKE, params)).matched == 1:
            taken.append(line)
        else:
            short.append(line.product_id)
    if short or not lines:  # all or none: what was taken goes back, in the same transaction
        for line in taken:
            params = {"product_id": line.product_id, "quantity": line.quantity, "now": now}
            await run(session, _GIVE_BACK, params)
    reservation = StockReservation(
        order_id=order.order_id,
        customer_id=order.customer_id,
        status=ReservationStatus.REJECTED if short or not lines else ReservationStatus.RESERVED,
        lines=[{"product_id": line.product_id, "quantity": line.quantity} for line in lines],
        created_at=now,
        updated_at=now,
    )
    await insert_instances(session, [reservation])
    if reservation.status == ReservationStatus.REJECTED:
        outbox.add(
            session,
            StockRejected(
                order_id=order.order_id, customer_id=order.customer_id, product_ids=short
            ),
        )
        return reservation
    outbox.add(
        session,
        StockReserved(
            order_id=order.order_id,
            customer_id=order.customer_id,
            total=order.total,
            payment_method=order.payment_method,
            lines=lines,
        ),
    )
    for line in lines:
        outbox.add(session, ProductUpdated(product_id=line.product_id, updated_at=now))
    return reservation


async def release_stock(session: WriteSession, order: OrderCancelled) -> list[str]:
    """Give back what a cancelled order had reserved; returns the products whose stock changed.

    Records `stock.released` when units came back. When catalog has not seen the order placed
    yet, leaves a tombstone so that a late `order.placed` reserves nothing.
    """
    reservation = await session.get(StockReservation, order.order_id, with_for_update=True)
    now = utcnow()
    if reservation is None:
        session.add(
            StockReservation(
                order_id=order.order_id,
                customer_id=order.customer_id,
                status=ReservationStatus.CANCELLED,
                lines=[],
                created_at=now,
                updated_at=now,
            )
        )
        return []
    if reservation.status != ReservationStatus.RESERVED:
        return []
    product_ids = []
    for line in reservation.lines:
        await session.execute(
            update(Product)
            .where(Product.id == line["product_id"])
            .values(stock=Product.stock + line["quantity"], updated_at=now)
            .execution_options(synchronize_session=False)
        )
        product_ids.append(line["product_id"])
        outbox.add(session, ProductUpdated(product_id=line["product_id"], updated_at=now))
    reservation.status = ReservationStatus.RELEASED
    reservation.updated_at = now
    outbox.add(session, StockReleased(order_id=order.order_id))
    return product_ids


_PRODUCTS = cast(Table, Product.__table__)
_SEEN = Query(
    select(StockReservation.order_id).where(StockReservation.order_id == bindparam("order_id"))
)
_TAKE = Query(
    update(_PRODUCTS)
    .where(
        _PRODUCTS.c.id == bindparam("product_id"),
        _PRODUCTS.c.stock >= bindparam("quantity"),
        _PRODUCTS.c.deleted_at.is_(None),
    )
    .values(stock=_PRODUCTS.c.stock - bindparam("quantity"), updated_at=bindparam("now"))
)
_GIVE_BACK = Query(
    update(_PRODUCTS)
    .where(_PRODUCTS.c.id == bindparam("product_id"))
    .values(stock=_PRODUCTS.c.stock + bindparam("quantity"), updated_at=bindparam("now"))
)
