"""Stock reservations for the checkout saga: all or none, never oversold, given back once."""

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bazaar.catalog import reservations, service
from bazaar.catalog.models import StockReservation
from bazaar.orders.events import OrderCancelled, OrderPlaced
from bazaar.platform.db import Database
from tests.catalog.conftest import add_product, cancelled, outbox_events, placed, stock_of


async def reserve(db: Database, order: OrderPlaced) -> StockReservation | None:
    async with db.write() as session:
        return await reservations.reserve_stock(session, order)


async def release(db: Database, order: OrderCancelled) -> list[str]:
    async with db.write() as session:
        return await reservations.release_stock(session, order)


async def test_every_line_is_reserved_and_payments_learns_the_order(catalog: Database) -> None:
    mug, pen = await add_product(catalog, stock=5), await add_product(catalog, stock=2)
    order = placed((mug, 2), (pen, 1), (mug, 1))
    reservation = await reserve(catalog, order)
    assert reservation is not None and reservation.status == "reserved"
    assert (await stock_of(catalog, mug), await stock_of(catalog, pen)) == (2, 1)
    [event] = await outbox_events(catalog, "stock.reserved")
    assert event["order_id"] == order.order_id and event["payment_method"] == "pm_card_visa"
    assert event["total"] == {"amount": 2000, "currency": "USD"}
    lines = {line["product_id"]: line["quantity"] for line in event["lines"]}
    assert lines == {mug: 3, pen: 1}


async def test_one_short_line_reserves_nothing(catalog: Database) -> None:
    mug, pen = await add_product(catalog, stock=5), await add_product(catalog, stock=1)
    order = placed((mug, 2), (pen, 1), (pen, 1))
    reservation = await reserve(catalog, order)
    assert reservation is not None and reservation.status == "rejected"
    assert (await stock_of(catalog, mug), await stock_of(catalog, pen)) == (5, 1)
    [event] = await outbox_events(catalog, "stock.rejected")
    assert event["product_ids"] == [pen] and event["customer_id"] == "customer-1"
    assert await outbox_events(catalog, "stock.reserved") == []


async def test_a_deleted_or_unknown_product_cannot_be_reserved(catalog: Database) -> None:
    mug, gone = await add_product(catalog), await add_product(catalog)
    async with catalog.write() as session:
        await service.delete_product(session, gone)
    await reserve(catalog, placed((mug, 1), (gone, 1), ("no-such-product", 1)))
    [event] = await outbox_events(catalog, "stock.rejected")
    assert sorted(event["product_ids"]) == sorted([gone, "no-such-product"])
    assert await stock_of(catalog, mug) == 10


async def test_cancelling_gives_the_units_back_once(catalog: Database) -> None:
    mug = await add_product(catalog, stock=3)
    order = placed((mug, 2))
    await reserve(catalog, order)
    assert await release(catalog, cancelled(order.order_id)) == [mug]
    assert await release(catalog, cancelled(order.order_id)) == []
    assert await stock_of(catalog, mug) == 3
    assert [e["order_id"] for e in await outbox_events(catalog, "stock.released")] == [
        order.order_id
    ]


async def test_an_order_cancelled_before_it_is_seen_placed_reserves_nothing(
    catalog: Database,
) -> None:
    mug = await add_product(catalog, stock=3)
    order = placed((mug, 2))
    assert await release(catalog, cancelled(order.order_id)) == []
    assert await reserve(catalog, order) is None
    assert await stock_of(catalog, mug) == 3
    assert await outbox_events(catalog, "stock.reserved") == []
    assert await outbox_events(catalog, "stock.released") == []


async def test_a_redelivered_order_is_reserved_once(catalog: Database) -> None:
    mug = await add_product(catalog, stock=3)
    order = placed((mug, 1))
    await reserve(catalog, order)
    assert await reserve(catalog, order) is None
    assert await stock_of(catalog, mug) == 2


async def test_the_last_units_go_to_exactly_as_many_orders(catalog: Database) -> None:
    mug = await add_product(catalog, stock=3)
    orders = [placed((mug, 1)) for _ in range(12)]
    outcomes = await asyncio.gather(*(reserve(catalog, order) for order in orders))
    assert (
        sorted(r.status for r in outcomes if r is not None) == ["rejected"] * 9 + ["reserved"] * 3
    )
    assert await stock_of(catalog, mug) == 0
    assert len(await outbox_events(catalog, "stock.reserved")) == 3


Step = tuple[str, int]


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    received=st.integers(min_value=0, max_value=6),
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("reserve"), st.integers(min_value=1, max_value=4)),
            st.tuples(st.just("release"), st.integers(min_value=0, max_value=20)),
        ),
        max_size=12,
    ),
)
async def test_sold_plus_left_is_always_what_was_received(
    catalog: Database, received: int, steps: list[Step]
) -> None:
    product = await add_product(catalog, stock=received)
    orders: list[OrderPlaced] = []
    for action, number in steps:
        if action == "reserve":
            order = placed((product, number))
            orders.append(order)
            await reserve(catalog, order)
        elif orders:
            await release(catalog, cancelled(orders[number % len(orders)].order_id))
    sold = 0
    async with catalog.read() as session:
        for order in orders:
            reservation = await session.get(StockReservation, order.order_id)
            if reservation is not None and reservation.status == "reserved":
                sold += order.lines[0].quantity
    left = await stock_of(catalog, product)
    assert left >= 0
    assert sold + left == received
