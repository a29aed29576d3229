"""Orders' use cases against real SQLite shards: carts, placing, reading and cancelling orders."""

from collections.abc import Awaitable, Callable, Collection
from typing import TypeVar

import pytest
from sqlalchemy import select

from bazaar.orders import cart as carts
from bazaar.orders import listing, service
from bazaar.orders.models import CartItem, Order
from bazaar.orders.prices import Quote
from bazaar.orders.service import Line
from bazaar.orders.work import OrdersWork
from bazaar.platform.auth import Principal
from bazaar.platform.db import Database
from bazaar.platform.errors import Conflict, NotFound, Unprocessable
from bazaar.platform.events import Envelope
from bazaar.platform.money import Money
from bazaar.platform.schema import outbox_message
from bazaar.platform.shards import ShardedDatabase
from bazaar.platform.unit_of_work import at_edge
from tests.e2e.checkout import ADDRESS
from tests.orders.conftest import PriceList, customers_on_each_shard

T = TypeVar("T")


async def outbox_events(db: Database) -> list[Envelope]:
    async with db.read() as session:
        rows = await session.scalars(
            select(outbox_message.c.envelope).order_by(outbox_message.c.id)
        )
        return [Envelope.decode(raw) for raw in rows]


async def place(
    orders: ShardedDatabase,
    prices: PriceList,
    customer_id: str,
    lines: list[Line] | None,
    payment_method: str = "pm_card_visa",
) -> Order:
    async with orders.for_customer(customer_id).write() as session:
        return await service.place_order(
            session,
            prices,
            order_id=orders.new_id(customer_id),
            customer_id=customer_id,
            lines=lines,
            payment_method=payment_method,
            shipping_address=ADDRESS,
        )


async def test_orders_of_customers_on_both_shards_are_found_by_their_id(
    orders: ShardedDatabase, prices: PriceList
) -> None:
    product = prices.sell(500)
    customers = customers_on_each_shard(orders)
    placed = [await place(orders, prices, c, [Line(product, 1)]) for c in customers]
    assert {orders.shards.index(orders.for_id(order.id)) for order in placed} == {0, 1}
    for order, customer_id in zip(placed, customers, strict=True):
        assert orders.for_id(order.id) is orders.for_customer(customer_id)
        found = await service.get_order(
            orders.for_id(order.id), order.id, Principal(customer_id, "customer")
        )
        assert found.customer_id == customer_id and found.status == "pending"
    for shard, order in zip(orders.shards, reversed(placed), strict=True):
        async with shard.read() as session:
            assert await session.get(Order, order.id) is None


async def test_an_order_is_priced_by_the_catalog_and_announced_in_the_same_transaction(
    orders: ShardedDatabase, prices: PriceList
) -> None:
    widget, gadget = prices.sell(250), prices.sell(1000)
    [customer_id, _] = customers_on_each_shard(orders)
    order = await place(
        orders, prices, customer_id, [Line(widget, 2), Line(gadget, 1), Line(widget, 3)]
    )
    assert order.status == "pending" and order.cancel_reason is None and order.payment_id is None
    assert [(i.product_id, i.quantity, i.unit_price) for i in order.items] == [
        (widget, 5, Money(250, "USD")),
        (gadget, 1, Money(1000, "USD")),
    ]
    assert order.total == Money(2250, "USD")
    [envelope] = await outbox_events(orders.for_customer(customer_id))
    assert envelope.type == "order.placed" and envelope.key == order.id
    assert envelope.data["customer_id"] == customer_id
    assert envelope.data["payment_method"] == "pm_card_visa"
    assert envelope.data["total"] == {"amount": 2250, "currency": "USD"}
    assert [line["quantity"] for line in envelope.data["lines"]] == [5, 1]
    assert envelope.data["lines"][0]["unit_price"] == {"amount": 250, "currency": "USD"}


async def test_a_later_price_change_does_not_touch_a_placed_order(
    orders: ShardedDatabase, prices: PriceList
) -> None:
    widget = prices.sell(250)
    [customer_id, _] = customers_on_each_shard(orders)
    order = await place(orders, prices, customer_id, [Line(widget, 1)])
    prices.reprice(widget, 999)
    again = await service.get_order(
        orders.for_id(order.id), order.id, Principal(customer_id, "customer")
    )
    assert again.total == Money(250, "USD")


async def test_ordering_the_cart_empties_it(orders: ShardedDatabase, prices: PriceList) -> None:
    widget, gadget = prices.sell(250), prices.sell(1000)
    [_, customer_id] = customers_on_each_shard(orders)
    db = orders.for_customer(customer_id)
    async with db.write() as session:
        await carts.set_cart_item(session, customer_id, widget, 2)
        await carts.set_cart_item(session, customer_id, gadget, 1)
    order = await place(orders, prices, customer_id, None)
    assert [(i.product_id, i.quantity) for i in order.items] == [(widget, 2), (gadget, 1)]
    assert order.total == Money(1500, "USD")
    async with db.read() as session:
        assert await carts.cart_items(session, customer_id) == []


async def test_an_empty_cart_cannot_be_ordered(orders: ShardedDatabase, prices: PriceList) -> None:
    [customer_id, _] = customers_on_each_shard(orders)
    with pytest.raises(Unprocessable, match="empty"):
        await place(orders, prices, customer_id, None)
    assert await outbox_events(orders.for_customer(customer_id)) == []


async def test_a_withdrawn_product_in_the_cart_is_neither_shown_nor_ordered(
    orders: ShardedDatabase, prices: PriceList
) -> None:
    widget, gadget = prices.sell(250), prices.sell(1000)
    [customer_id, _] = customers_on_each_shard(orders)
    db = orders.for_customer(customer_id)
    async with db.write() as session:
        await carts.set_cart_item(session, customer_id, widget, 2)
        items = await carts.set_cart_item(session, customer_id, gadget, 1)
    prices.withdraw(gadget)
    cart = carts.price_cart(items, await prices.quote([widget, gadget]))
    assert [line.product_id for line in cart.items] == [widget]
    assert cart.total == Money(500, "USD")
    order = await place(orders, prices, customer_id, None)
    assert [i.product_id for i in order.items] == [widget]


async def test_unknown_products_are_named_by_their_line(
    orders: ShardedDatabase, prices: PriceList
) -> None:
    widget = prices.sell(250)
    [customer_id, _] = customers_on_each_shard(orders)
    with pytest.raises(Unprocessable) as raised:
        await place(orders, prices, customer_id, [Line(widget, 1), Line("nope", 1)])
    assert [error.loc for error in raised.value.errors] == [["body", "items", 1, "product_id"]]
    async with orders.for_customer(customer_id).read() as session:
        assert (await session.scalars(select(Order))).all() == []


async def test_lines_in_several_currencies_are_refused(
    orders: ShardedDatabase, prices: PriceList
) -> None:
    dollars, euros = prices.sell(250, "USD"), prices.sell(300, "EUR")
    [customer_id, _] = customers_on_each_shard(orders)
    with pytest.raises(Unprocessable) as raised:
        await place(orders, prices, customer_id, [Line(dollars, 1), Line(euros, 1)])
    assert [error.loc for error in raised.value.errors] == [["body", "items", 1, "product_id"]]


async def test_merged_lines_may_not_exceed_the_quantity_limit(
    orders: ShardedDatabase, prices: PriceList
) -> None:
    widget = prices.sell(250)
    [customer_id, _] = customers_on_each_shard(orders)
    with pytest.raises(Unprocessable) as raised:
        await place(orders, prices, customer_id, [Line(widget, 60), Line(widget, 41)])
    assert [error.loc for error in raised.value.errors] == [["body", "items", 1, "quantity"]]


async def test_the_cart_is_priced_when_shown(orders: ShardedDatabase, prices: PriceList) -> None:
    widget = prices.sell(250)
    [customer_id, _] = customers_on_each_shard(orders)
    async with orders.for_customer(customer_id).write() as session:
        await carts.set_cart_item(session, customer_id, widget, 3)
        items = await carts.set_cart_item(session, customer_id, widget, 2)
    assert [(item.product_id, item.quantity) for item in items] == [(widget, 2)]
    prices.reprice(widget, 300)
    cart = carts.price_cart(items, await prices.quote([widget]))
    assert cart.items[0].unit_price == Money(300, "USD") and cart.total == Money(600, "USD")
    assert carts.price_cart([], {}).total == Money(0, "USD")


async def test_a_product_in_another_currency_cannot_join_the_cart(
    orders: ShardedDatabase, prices: PriceList
) -> None:
    dollars, euros = prices.sell(250, "USD"), prices.sell(300, "EUR")
    [customer_id, _] = customers_on_each_shard(orders)
    async with orders.for_customer(customer_id).write() as session:
        items = await carts.set_cart_item(session, customer_id, dollars, 1)
    quotes = await prices.quote([dollars, euros, "nope"])
    with pytest.raises(Unprocessable):
        carts.check_addable(quotes, euros, items)
    with pytest.raises(NotFound):
        carts.check_addable(quotes, "nope", items)
    carts.check_addable(quotes, dollars, items)


async def test_removing_a_cart_item(orders: ShardedDatabase, prices: PriceList) -> None:
    widget, gadget = prices.sell(250), prices.sell(1000)
    [customer_id, other] = customers_on_each_shard(orders)
    async with orders.for_customer(customer_id).write() as session:
        await carts.set_cart_item(session, customer_id, widget, 1)
        await carts.set_cart_item(session, customer_id, gadget, 1)
        items = await carts.remove_cart_item(session, customer_id, widget)
        assert [item.product_id for item in items] == [gadget]
        assert await carts.remove_cart_item(session, customer_id, "absent") == items
    async with orders.for_customer(other).read() as session:
        assert (await session.scalars(select(CartItem))).all() == []


class WatchedPrices:
    """The price list, noting at each quote how many connections of `db` were held."""

    def __init__(self, prices: PriceList, db: Database) -> None:
        self.prices = prices
        self.db = db
        self.held: list[int] = []

    async def quote(
        self, product_ids: Collection[str], *, recent: bool = False
    ) -> dict[str, Quote]:
        engines = [self.db.primary, self.db.reader]
        self.held.append(sum(e.sync_engine.pool.checkedout() for e in engines if e is not None))
        return await self.prices.quote(product_ids, recent=recent)


async def test_the_catalog_answers_while_no_connection_of_the_shard_is_held(
    orders: ShardedDatabase, prices: PriceList
) -> None:
    widget, gadget = prices.sell(250), prices.sell(1000)
    [customer_id, _] = customers_on_each_shard(orders)
    db = orders.for_customer(customer_id)
    watched = WatchedPrices(prices, db)

    async def in_request(use_case: Callable[[OrdersWork], Awaitable[T]]) -> T:
        work = OrdersWork(db, orders, watched)
        async with at_edge(work):  # commits as the edge does, after the use case
            return await use_case(work)

    await in_request(lambda work: carts.put_in_cart(work, customer_id, widget, 2))
    cart = await in_request(lambda work: carts.put_in_cart(work, customer_id, gadget, 1))
    assert [(line.product_id, line.quantity) for line in cart.items] == [(widget, 2), (gadget, 1)]
    cart = await in_request(lambda work: carts.take_out_of_cart(work, customer_id, gadget))
    assert cart.total == Money(500, "USD")
    assert (await in_request(lambda work: carts.show_cart(work, customer_id))) == cart
    address = service.Address("Ada", "1 Main St", "Springfield", "12345", "US")
    from_cart = service.NewOrder(None, "pm_card_visa", address)
    order = await in_request(lambda work: service.check_out(work, customer_id, from_cart))
    assert [(i.product_id, i.quantity) for i in order.items] == [(widget, 2)]
    lines = service.NewOrder([service.Line(gadget, 3)], "pm_card_visa", address)
    order = await in_request(lambda work: service.check_out(work, customer_id, lines))
    assert order.total == Money(3000, "USD")
    assert list(order.shipping_address.items()) == [
        ("name", "Ada"),
        ("line1", "1 Main St"),
        ("city", "Springfield"),
        ("postal_code", "12345"),
        ("country", "US"),
        ("line2", None),
    ]
    assert len(watched.held) == 6 and set(watched.held) == {0}
    # a cart may show a recent quote; an order is placed at the catalog's price of now
    assert prices.asked == [True, True, True, True, False, False]


async def test_a_customers_orders_newest_first(orders: ShardedDatabase, prices: PriceList) -> None:
    widget = prices.sell(250)
    [customer_id, other] = customers_on_each_shard(orders)
    placed = [await place(orders, prices, customer_id, [Line(widget, n)]) for n in (1, 2, 3)]
    await place(orders, prices, other, [Line(widget, 1)])
    async with orders.for_customer(customer_id).read() as session:
        first = await listing.list_orders(session, customer_id, 2, None)
        rest = await listing.list_orders(session, customer_id, 2, first[1].id)
    assert [o.id for o in first] == [placed[2].id, placed[1].id, placed[0].id]
    assert [o.id for o in rest] == [placed[0].id]


async def test_another_customers_order_is_not_found_but_an_admin_sees_it(
    orders: ShardedDatabase, prices: PriceList
) -> None:
    widget = prices.sell(250)
    [owner, stranger] = customers_on_each_shard(orders)
    order = await place(orders, prices, owner, [Line(widget, 1)])
    shard = orders.for_id(order.id)
    with pytest.raises(NotFound):
        await service.get_order(shard, order.id, Principal(stranger, "customer"))
    async with shard.write() as session:
        with pytest.raises(NotFound):
            await service.cancel_order(session, order.id, Principal(stranger, "customer"))
    seen = await service.get_order(shard, order.id, Principal("someone", "admin"))
    assert seen.id == order.id and seen.status == "pending"


async def test_the_owner_cancels_a_pending_order_once(
    orders: ShardedDatabase, prices: PriceList
) -> None:
    widget = prices.sell(250)
    [owner, _] = customers_on_each_shard(orders)
    order = await place(orders, prices, owner, [Line(widget, 2)])
    db = orders.for_id(order.id)
    async with db.write() as session:
        cancelled = await service.cancel_order(session, order.id, Principal(owner, "customer"))
    assert (cancelled.status, cancelled.cancel_reason) == ("cancelled", "customer_cancelled")
    with pytest.raises(Conflict):
        async with db.write() as session:
            await service.cancel_order(session, order.id, Principal(owner, "customer"))
    events = await outbox_events(db)
    assert [e.type for e in events] == ["order.placed", "order.cancelled"]
    assert events[1].data["reason"] == "customer_cancelled"
    assert events[1].data["total"] == {"amount": 500, "currency": "USD"}
    assert events[1].data["payment_id"] is None


async def test_an_admin_cancels_a_confirmed_order_and_names_its_payment(
    orders: ShardedDatabase, prices: PriceList
) -> None:
    widget = prices.sell(250)
    [owner, _] = customers_on_each_shard(orders)
    order = await place(orders, prices, owner, [Line(widget, 1)])
    db = orders.for_id(order.id)
    async with db.write() as session:
        await service.confirm_order(session, order.id, "pay_1")
    async with db.write() as session:
        cancelled = await service.cancel_order(session, order.id, Principal("boss", "admin"))
    assert cancelled.status == "cancelled" and cancelled.payment_id == "pay_1"
    last = (await outbox_events(db))[-1]
    assert last.type == "order.cancelled" and last.data["payment_id"] == "pay_1"
