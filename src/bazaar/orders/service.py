"""Orders' use cases: place an order, move it along the checkout saga, cancel it (the cart's
are in `cart.py`).

Prices come from the catalog through the `CatalogPrices` port, never from its tables. A cart
stores quantities only and is priced when it is shown; an order keeps the prices quoted when it
was placed. An order changes state only under a row lock (`FOR UPDATE` where the database has
it; SQLite writers are serialized anyway), so a customer's cancel and a saga step never both
win.

The use cases of a request that asks the catalog (`check_out`, the cart's) take the
request's `OrdersWork` (`work.py`) rather than a session: they read, quote, and only then
begin the write transaction (`OrdersWork.session()`), so that a shard's connection is never
held while the catalog answers. An open session handed in would have been begun before the
quote, and a use case in two steps would leave their order to each route; with the unit of
work the use case says when its transaction begins, and the edge still commits it (or rolls
it back) after the route answered.
"""

from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import String, Table, bindparam, delete, func, select, update

from bazaar.orders import listing
from bazaar.orders.cart import cart_items, quote_missing
from bazaar.orders.events import OrderCancelled, OrderConfirmed, OrderLine, OrderPlaced
from bazaar.orders.models import CancelReason, CartItem, Order, OrderItem, OrderStatus
from bazaar.orders.prices import CatalogPrices, Quote
from bazaar.orders.work import OrdersWork
from bazaar.platform import outbox
from bazaar.platform.auth import Principal
from bazaar.platform.clock import utcnow
from bazaar.platform.db import Database, ReadSession, WriteSession
from bazaar.platform.errors import Conflict, FieldError, NotFound, Unprocessable
from bazaar.platform.money import Money
from bazaar.platform.queries import Query
from bazaar.platform.statements import insert_instances, run

MAX_QUANTITY = 100

Session = ReadSession | WriteSession


@dataclass(frozen=True, slots=True)
class Line:
    product_id: str
    quantity: int


@dataclass(frozen=True, slots=True)
class Address:
    name: str
    line1: str
    city: str
    postal_code: str
    country: str
    """ISO 3166-1 alpha-2."""
    line2: str | None = None


@dataclass(frozen=True, slots=True)
class NewOrder:
    """What a customer orders: `lines`, or their cart when None."""

    lines: Sequence[Line] | None
    payment_method: str
    shipping_address: Address


# --- placing an order -------------------------------------------------------------------------


async def check_out(work: OrdersWork, customer_id: str, order: NewOrder) -> Order:
    """Place the customer's order (`place_order`) in the request's transaction, with a new id
    of their shard.

    The lines (or the cart's products, read first) are quoted before the write transaction
    begins, so the shard is not held while the catalog answers; `place_order` then quotes
    only a product that the cart gained in between.
    """
    if order.lines is None:
        async with work.read() as session:
            wanted = [item.product_id for item in await cart_items(session, customer_id)]
    else:
        wanted = [line.product_id for line in order.lines]
    quotes = await quote_missing(work.prices, wanted)
    return await place_order(
        await work.session(),
        work.prices,
        order_id=work.shards.new_id(customer_id),
        customer_id=customer_id,
        lines=order.lines,
        payment_method=order.payment_method,
        shipping_address=asdict(order.shipping_address),
        quotes=quotes,
    )


async def place_order(
    session: WriteSession,
    prices: CatalogPrices,
    *,
    order_id: str,
    customer_id: str,
    lines: Sequence[Line] | None,
    payment_method: str,
    shipping_address: dict[str, Any],
    quotes: dict[str, Quote] | None = None,
) -> Order:
    """Place a pending order at the catalog's current prices and announce it (`OrderPlaced`).

    Without `lines` the customer's cart is ordered and emptied in the same transaction.
    `quotes` may carry prices fetched before the transaction; missing ones are fetched here.
    Raises Unprocessable for an unknown product, mixed currencies or an empty cart.
    """
    from_cart = lines is None
    if lines is None:
        cart = await cart_items(session, customer_id)
        lines = [Line(item.product_id, item.quantity) for item in cart]
    quotes = await quote_missing(prices, (line.product_id for line in lines), quotes)
    if from_cart:
        # the cart never shows products the catalog stopped selling, so they are not ordered
        lines = [line for line in lines if line.product_id in quotes]
        if not lines:
            raise Unprocessable("The cart is empty", [FieldError(["body", "items"], "required")])
    merged = _merge(lines, quotes, prefix=None if from_cart else ["body", "items"])

    now = utcnow()
    total = Money(0, merged[0][1].unit_price.currency)
    for line, quote in merged:
        total += quote.unit_price.times(line.quantity)
    order = Order(
        id=order_id,
        customer_id=customer_id,
        status=OrderStatus.PENDING,
        cancel_reason=None,
        total_amount=total.amount,
        currency=total.currency,
        payment_method=payment_method,
        payment_id=None,
        shipping_address=shipping_address,
        created_at=now,
        updated_at=now,
        items=[
            OrderItem(
                order_id=order_id,
                line=number,
                product_id=line.product_id,
                name=quote.name,
                quantity=line.quantity,
                unit_price_amount=quote.unit_price.amount,
                currency=quote.unit_price.currency,
            )
            for number, (line, quote) in enumerate(merged)
        ],
    )
    await insert_instances(session, [order])
    await insert_instances(session, order.items)
    if from_cart:
        await run(session, _EMPTY_CART, {"customer_id": customer_id})
    outbox.add(
        session,
        OrderPlaced(
            order_id=order.id,
            customer_id=customer_id,
            lines=[OrderLine(i.product_id, i.quantity, i.unit_price) for i in order.items],
            total=total,
            payment_method=payment_method,
        ),
    )
    return order


def _merge(
    lines: Sequence[Line], quotes: dict[str, Quote], prefix: list[str | int] | None
) -> list[tuple[Line, Quote]]:
    """Lines with one entry per product (first position kept), each with its quote.

    `prefix` is where the lines are in the request body, for the errors' `loc`.
    """
    errors: list[FieldError] = []
    merged: dict[str, Line] = {}
    currency: str | None = None
    for index, line in enumerate(lines):
        loc: list[str | int] = [*(prefix or ["cart", "items"]), index]
        quote = quotes.get(line.product_id)
        if quote is None:
            errors.append(FieldError([*loc, "product_id"], "no such product"))
            continue
        currency = currency or quote.unit_price.currency
        if quote.unit_price.currency != currency:
            errors.append(FieldError([*loc, "product_id"], f"not priced in {currency}"))
            continue
        earlier = merged.get(line.product_id)
        quantity = line.quantity + (earlier.quantity if earlier else 0)
        if quantity > MAX_QUANTITY:
            errors.append(FieldError([*loc, "quantity"], f"at most {MAX_QUANTITY} per product"))
            continue
        merged[line.product_id] = Line(line.product_id, quantity)
    if errors:
        raise Unprocessable("Some order lines cannot be ordered", errors)
    return [(line, quotes[product_id]) for product_id, line in merged.items()]


# --- reading orders ----------------------------------------------------------------------------


async def list_all_orders(
    work: OrdersWork,
    limit: int,
    after: tuple[datetime, str] | None,
    *,
    status: str | None = None,
    customer_id: str | None = None,
) -> list[Order]:
    """Up to `limit + 1` orders, newest first, of every shard (or of the one holding
    `customer_id`'s): `listing.list_all_orders` on a read session of each."""
    shards = work.shards
    databases = [shards.for_customer(customer_id)] if customer_id else list(shards.shards)
    async with AsyncExitStack() as stack:
        sessions = [await stack.enter_async_context(db.read()) for db in databases]
        return await listing.list_all_orders(
            sessions, limit, after, status=status, customer_id=customer_id
        )


# --- one order ---------------------------------------------------------------------------------


async def get_order(db: Database, order_id: str, principal: Principal) -> listing.OrderView:
    """The order, if the caller may see it; NotFound (never Forbidden) for anyone else's."""
    order = await listing.one_order(db, order_id)
    if order is None or not principal.may_see(order.customer_id):
        raise NotFound("No such order")
    return order


# --- state changes ---------------------------------------------------------------------------


async def _lock(session: WriteSession, order_id: str) -> Order | None:
    query = select(Order).where(Order.id == order_id).with_for_update()
    return (await session.scalars(query)).one_or_none()


def _cancel(session: WriteSession, order: Order, reason: str, payment_id: str | None) -> None:
    order.status = OrderStatus.CANCELLED
    order.cancel_reason = reason
    order.payment_id = payment_id or order.payment_id
    order.updated_at = utcnow()
    _announce_cancelled(session, order, reason)


def _announce_cancelled(session: WriteSession, order: Order, reason: str) -> None:
    outbox.add(
        session,
        OrderCancelled(
            order_id=order.id,
            customer_id=order.customer_id,
            reason=reason,
            total=order.total,
            payment_id=order.payment_id,
        ),
    )


async def cancel_order(session: WriteSession, order_id: str, principal: Principal) -> Order:
    """The owner or an admin cancels a pending or confirmed order (`OrderCancelled`).

    A confirmed order's payment is then refunded and its reserved stock comes back.
    Raises NotFound for an order the caller may not see, Conflict when already cancelled.
    """
    order = await _lock(session, order_id)
    if order is None or not principal.may_see(order.customer_id):
        raise NotFound("No such order")
    if order.status == OrderStatus.CANCELLED:
        raise Conflict("The order is already cancelled")
    _cancel(session, order, CancelReason.CUSTOMER_CANCELLED, None)
    await session.flush()
    return order


async def confirm_order(session: WriteSession, order_id: str, payment_id: str) -> Order | None:
    """Confirm a pending order whose payment was captured (`OrderConfirmed`).

    Returns None, changing nothing, when the order is unknown or no longer pending.
    """
    params = {"order_id": order_id, "payment": payment_id, "now": utcnow()}
    order = await _settle(session, _CONFIRM, params, OrderStatus.CONFIRMED)
    if order is None:
        return None
    outbox.add(
        session,
        OrderConfirmed(
            order_id=order.id,
            customer_id=order.customer_id,
            total=order.total,
            payment_id=payment_id,
        ),
    )
    return order


async def abandon_order(
    session: WriteSession, order_id: str, reason: str, payment_id: str | None = None
) -> Order | None:
    """Cancel a pending order that checkout could not complete (`OrderCancelled`).

    Returns None, changing nothing, when the order is unknown or no longer pending.
    """
    params = {"order_id": order_id, "reason": reason, "payment": payment_id, "now": utcnow()}
    order = await _settle(session, _ABANDON, params, OrderStatus.CANCELLED)
    if order is not None:
        _announce_cancelled(session, order, reason)
    return order


async def _settle(
    session: WriteSession, statement: Query, params: dict[str, Any], status: OrderStatus
) -> Order | None:
    """Move a pending order to `status` with one conditional UPDATE (`_CONFIRM`, `_ABANDON`);
    the order as it now stands, without its lines, or None when it was not pending."""
    found = (await run(session, statement, params)).rows
    if not found:
        return None
    [(customer_id, total_amount, currency, payment_id, cancel_reason, created_at)] = found
    return Order(
        id=params["order_id"],
        customer_id=customer_id,
        status=status,
        cancel_reason=cancel_reason,
        total_amount=total_amount,
        currency=currency,
        payment_id=payment_id,
        created_at=created_at,
        updated_at=params["now"],
    )


_ORDER_TABLE = cast(Table, Order.__table__)
_EMPTY_CART = Query(delete(CartItem).where(CartItem.customer_id == bindparam("customer_id")))
_PENDING = (
    _ORDER_TABLE.c.id == bindparam("order_id"),
    _ORDER_TABLE.c.status == OrderStatus.PENDING,
)
_SETTLED = (
    _ORDER_TABLE.c.customer_id,
    _ORDER_TABLE.c.total_amount,
    _ORDER_TABLE.c.currency,
    _ORDER_TABLE.c.payment_id,
    _ORDER_TABLE.c.cancel_reason,
    _ORDER_TABLE.c.created_at,
)
_CONFIRM = Query(
    update(_ORDER_TABLE)
    .where(*_PENDING)
    .values(
        status=OrderStatus.CONFIRMED, payment_id=bindparam("payment"), updated_at=bindparam("now")
    )
    .returning(*_SETTLED)
)
_ABANDON = Query(
    update(_ORDER_TABLE)
    .where(*_PENDING)
    .values(
        status=OrderStatus.CANCELLED,
        cancel_reason=bindparam("reason"),
        payment_id=func.coalesce(bindparam("payment", type_=String), _ORDER_TABLE.c.payment_id),
        updated_at=bindparam("now"),
    )
    .returning(*_SETTLED)
)
