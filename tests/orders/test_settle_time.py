"""How long an order takes to settle is observed once per order, when its new state commits:
by the saga's handlers, and over a whole checkout on SQLite files and on PostgreSQL (which keep
the order's `created_at` and its zone differently)."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import httpx
import pytest
from prometheus_client import REGISTRY

from bazaar.payments.events import PaymentFailed
from bazaar.platform.bus import Handle, deliver
from bazaar.platform.events import Envelope
from bazaar.platform.shards import ShardedDatabase
from bazaar.runtime.embedded import Runtime
from tests.e2e.checkout import create_product, eventually, place_order, settled
from tests.orders.conftest import PriceList
from tests.orders.test_handlers import (
    NO_RETRY,
    handle,
    pending_order,
    reload,
    subscription_for,
    succeeded,
)
from tests.plugin import admin as make_admin
from tests.plugin import customer, started
from tests.postgres import fresh_database_url, require_server


def settle_times(outcome: str) -> tuple[float, float]:
    """How many orders settled with `outcome`, and their settle times' sum."""
    labels = {"outcome": outcome}
    count = REGISTRY.get_sample_value("bazaar_order_settle_seconds_count", labels)
    total = REGISTRY.get_sample_value("bazaar_order_settle_seconds_sum", labels)
    return count or 0.0, total or 0.0


async def test_a_redelivered_or_late_event_times_the_order_once(
    orders: ShardedDatabase, prices: PriceList
) -> None:
    order = await pending_order(orders, prices)
    confirmed, cancelled = settle_times("confirmed"), settle_times("cancelled")
    envelope = await handle(orders, succeeded(order))
    assert await deliver(subscription_for(orders, succeeded(order)), envelope, NO_RETRY)
    await handle(
        orders,
        PaymentFailed(payment_id="pay_9", order_id=order.id, customer_id=order.customer_id),
    )
    count, total = settle_times("confirmed")
    assert count == confirmed[0] + 1
    assert 0 < total - confirmed[1] < 10
    assert settle_times("cancelled") == cancelled


async def test_a_settlement_rolled_back_is_not_timed(
    orders: ShardedDatabase, prices: PriceList
) -> None:
    order = await pending_order(orders, prices)
    before = settle_times("confirmed")
    with pytest.raises(RuntimeError):
        async with orders.for_id(order.id).write() as session:
            confirm = cast(Handle, subscription_for(orders, succeeded(order)).handle)
            await confirm(session, Envelope.wrap(succeeded(order)))
            raise RuntimeError("the transaction fails after the handler")
    assert (await reload(orders, order.id)).status == "pending"
    assert settle_times("confirmed") == before
    await handle(orders, succeeded(order))
    assert settle_times("confirmed")[0] == before[0] + 1


@pytest.fixture(params=["sqlite", "postgresql"])
async def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Runtime]:
    extra: dict[str, str] = {}
    if request.param == "postgresql":
        await require_server()
        extra["BAZAAR_DATABASE_URL"] = fresh_database_url()
    async with started(tmp_path / "data", on_servers=request.param != "sqlite", **extra) as runtime:
        yield runtime


async def checkout(
    runtime: Runtime, client: httpx.AsyncClient, payment_method: str, outcome: str
) -> float:
    """Place an order that settles with `outcome`; the settle time observed for it."""
    admin = await make_admin(runtime, client)
    ada = await customer(client)
    product = await create_product(client, admin, stock=5)
    before = settle_times(outcome)
    placed = await place_order(
        client, ada, [{"product_id": product["id"], "quantity": 1}], payment_method
    )
    assert (await settled(client, ada, placed.json()["id"]))["status"] == outcome

    async def observed() -> bool:
        return settle_times(outcome)[0] > before[0]

    await eventually(observed)
    count, total = settle_times(outcome)
    assert count == before[0] + 1
    return total - before[1]


async def test_a_checkout_times_its_order_confirmed(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    assert 0 < await checkout(runtime, client, "pm_card_visa", "confirmed") < 10


async def test_a_declined_card_times_its_order_cancelled(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    assert 0 < await checkout(runtime, client, "pm_card_declined", "cancelled") < 10


def hop_times() -> dict[tuple[str, str], float]:
    """How many times each consumer handled each event type, and how many jobs of each kind ran
    (keyed `("job", kind)`), by the time histograms."""
    found: dict[tuple[str, str], float] = {}
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            if sample.name == "bazaar_event_handle_seconds_count":
                found[sample.labels["consumer"], sample.labels["event"]] = sample.value
            elif sample.name == "bazaar_job_seconds_count":
                found["job", sample.labels["kind"]] = sample.value
    return found


async def test_every_hop_of_a_checkout_is_timed(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    before = hop_times()
    await checkout(runtime, client, "pm_card_visa", "confirmed")
    hops = {
        ("catalog.reserve_stock", "order.placed"),
        ("payments.capture_payment", "stock.reserved"),
        ("orders", "payment.succeeded"),
        ("notifications", "order.confirmed"),
        ("notifications.webhooks", "order.confirmed"),  # no webhook wants it: a read, timed too
        ("job", "email"),
    }

    async def all_timed() -> bool:
        now = hop_times()
        return all(now.get(hop, 0) > before.get(hop, 0) for hop in hops)

    await eventually(all_timed)
