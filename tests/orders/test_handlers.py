"""The checkout saga's replies settle a pending order once, on its shard, and nothing else."""

from prometheus_client import REGISTRY
from sqlalchemy import select

from bazaar.catalog.events import StockRejected
from bazaar.orders import handlers, service
from bazaar.orders.models import Order
from bazaar.orders.service import Line
from bazaar.payments.events import PaymentDeclined, PaymentFailed, PaymentSucceeded
from bazaar.platform.auth import Principal
from bazaar.platform.bus import RetryPolicy, Subscription, deliver
from bazaar.platform.events import Envelope, Event
from bazaar.platform.money import Money
from bazaar.platform.schema import dead_letter
from bazaar.platform.shards import ShardedDatabase
from tests.e2e.checkout import ADDRESS
from tests.orders.conftest import PriceList, customers_on_each_shard
from tests.orders.test_service import outbox_events

NO_RETRY = RetryPolicy(attempts=1)


def outcomes(outcome: str) -> float:
    sample = REGISTRY.get_sample_value("bazaar_checkout_outcomes_total", {"outcome": outcome})
    return sample or 0.0


async def pending_order(orders: ShardedDatabase, prices: PriceList, shard: int = 0) -> Order:
    customer_id = customers_on_each_shard(orders)[shard]
    async with orders.for_customer(customer_id).write() as session:
        return await service.place_order(
            session,
            prices,
            order_id=orders.new_id(customer_id),
            customer_id=customer_id,
            lines=[Line(prices.sell(1250), 2)],
            payment_method="pm_card_visa",
            shipping_address=ADDRESS,
        )


def subscription_for(orders: ShardedDatabase, event: Event) -> Subscription:
    [found] = [s for s in handlers.subscriptions(orders) if s.event_type == event.event_type]
    return found


async def handle(orders: ShardedDatabase, event: Event) -> Envelope:
    envelope = Envelope.wrap(event)
    assert await deliver(subscription_for(orders, event), envelope, NO_RETRY)
    return envelope


async def reload(orders: ShardedDatabase, order_id: str) -> Order:
    return await service.get_order(orders.for_id(order_id), order_id, Principal("ops", "admin"))


def succeeded(order: Order, payment_id: str = "pay_1") -> PaymentSucceeded:
    return PaymentSucceeded(
        payment_id=payment_id,
        order_id=order.id,
        customer_id=order.customer_id,
        amount=Money(2500, "USD"),
    )


async def test_a_captured_payment_confirms_the_order(
    orders: ShardedDatabase, prices: PriceList
) -> None:
    order = await pending_order(orders, prices, shard=1)
    before = outcomes("confirmed")
    await handle(orders, succeeded(order))
    confirmed = await reload(orders, order.id)
    assert (confirmed.status, confirmed.payment_id) == ("confirmed", "pay_1")
    last = (await outbox_events(orders.for_id(order.id)))[-1]
    assert last.type == "order.confirmed" and last.key == order.id
    assert last.data["payment_id"] == "pay_1" and last.data["total"]["amount"] == 2500
    assert outcomes("confirmed") == before + 1


async def test_rejected_stock_cancels_the_order_out_of_stock(
    orders: ShardedDatabase, prices: PriceList
) -> None:
    order = await pending_order(orders, prices)
    product_id = order.items[0].product_id
    await handle(
        orders,
        StockRejected(order_id=order.id, customer_id=order.customer_id, product_ids=[product_id]),
    )
    cancelled = await reload(orders, order.id)
    assert (cancelled.status, cancelled.cancel_reason) == ("cancelled", "out_of_stock")
    last = (await outbox_events(orders.for_id(order.id)))[-1]
    assert last.type == "order.cancelled" and last.data["reason"] == "out_of_stock"
    assert last.data["payment_id"] is None


async def test_a_declined_payment_cancels_the_order_and_keeps_the_payment_id(
    orders: ShardedDatabase, prices: PriceList
) -> None:
    order = await pending_order(orders, prices)
    await handle(
        orders,
        PaymentDeclined(
            payment_id="pay_2",
            order_id=order.id,
            customer_id=order.customer_id,
            decline_code="card_declined",
        ),
    )
    cancelled = await reload(orders, order.id)
    assert (cancelled.status, cancelled.cancel_reason) == ("cancelled", "payment_declined")
    assert cancelled.payment_id == "pay_2"
    last = (await outbox_events(orders.for_id(order.id)))[-1]
    assert last.data["reason"] == "payment_declined" and last.data["payment_id"] == "pay_2"


async def test_a_failed_payment_cancels_the_order(
    orders: ShardedDatabase, prices: PriceList
) -> None:
    order = await pending_order(orders, prices, shard=1)
    await handle(
        orders,
        PaymentFailed(payment_id="pay_3", order_id=order.id, customer_id=order.customer_id),
    )
    cancelled = await reload(orders, order.id)
    assert (cancelled.status, cancelled.cancel_reason) == ("cancelled", "payment_failed")
    last = (await outbox_events(orders.for_id(order.id)))[-1]
    assert last.type == "order.cancelled" and last.data["reason"] == "payment_failed"


async def test_a_redelivered_event_takes_effect_once(
    orders: ShardedDatabase, prices: PriceList
) -> None:
    order = await pending_order(orders, prices)
    before = outcomes("confirmed")
    envelope = await handle(orders, succeeded(order))
    assert await deliver(subscription_for(orders, succeeded(order)), envelope, NO_RETRY)
    events = await outbox_events(orders.for_id(order.id))
    assert [e.type for e in events] == ["order.placed", "order.confirmed"]
    assert outcomes("confirmed") == before + 1


async def test_only_a_pending_order_moves(orders: ShardedDatabase, prices: PriceList) -> None:
    order = await pending_order(orders, prices)
    async with orders.for_id(order.id).write() as session:
        await service.cancel_order(session, order.id, Principal(order.customer_id, "customer"))
    await handle(orders, succeeded(order))
    await handle(
        orders,
        PaymentFailed(payment_id="pay_4", order_id=order.id, customer_id=order.customer_id),
    )
    after = await reload(orders, order.id)
    assert (after.status, after.cancel_reason, after.payment_id) == (
        "cancelled",
        "customer_cancelled",
        None,
    )
    events = await outbox_events(orders.for_id(order.id))
    assert [e.type for e in events] == ["order.placed", "order.cancelled"]

    confirmed = await pending_order(orders, prices, shard=1)
    await handle(orders, succeeded(confirmed, "pay_5"))
    await handle(
        orders,
        StockRejected(order_id=confirmed.id, customer_id=confirmed.customer_id, product_ids=[]),
    )
    assert (await reload(orders, confirmed.id)).status == "confirmed"


async def test_an_event_for_an_unknown_order_is_recorded_and_skipped(
    orders: ShardedDatabase, prices: PriceList
) -> None:
    order = await pending_order(orders, prices)
    for order_id in (orders.new_id("someone"), "not-an-order-id"):
        stray = PaymentFailed(payment_id="pay_6", order_id=order_id, customer_id="someone")
        await handle(orders, stray)
    assert (await reload(orders, order.id)).status == "pending"
    for shard in orders.shards:
        async with shard.read() as session:
            assert (await session.execute(select(dead_letter))).all() == []
