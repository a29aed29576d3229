"""The shop's promises, checked against the databases themselves rather than the API's word.

After a fault and its recovery: every accepted order is settled (confirmed or cancelled), no
payment is captured twice and every captured payment of a cancelled order is refunded, stock
is conserved, every settled order has exactly one in-app notification and one email, and
nothing sits in a dead-letter store.
"""

from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import select

from bazaar.catalog.models import Product
from bazaar.notifications.models import Notification, OutgoingEmail
from bazaar.orders.models import CANCELLED, CONFIRMED, Order
from bazaar.payments.models import REFUNDED, LedgerEntry, Payment
from bazaar.platform.bus import stored_dead_letters
from bazaar.platform.rabbitmq import RabbitMQBus
from bazaar.runtime.embedded import Runtime


@dataclass
class Findings:
    """What the databases say about a set of accepted orders; `violations` must stay empty."""

    statuses: Counter = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)

    @property
    def unsettled(self) -> int:
        return sum(n for status, n in self.statuses.items() if status not in (CONFIRMED, CANCELLED))


async def orders_of(runtime: Runtime, order_ids: set[str]) -> dict[str, Order]:
    found: dict[str, Order] = {}
    for shard in runtime.platform.orders.shards:
        async with shard.read(fresh=True) as session:
            rows = await session.scalars(select(Order).where(Order.id.in_(order_ids)))
            found.update({order.id: order for order in rows})
    return found


async def settlement(runtime: Runtime, order_ids: set[str]) -> Findings:
    """How the accepted orders stand, and any that the databases do not know."""
    findings = Findings()
    orders = await orders_of(runtime, order_ids)
    findings.statuses.update(order.status for order in orders.values())
    for missing in sorted(order_ids - orders.keys()):
        findings.violations.append(f"order {missing} was accepted but is not in any shard")
    return findings


async def check(runtime: Runtime, order_ids: set[str], initial_stock: dict[str, int]) -> Findings:
    """Every promise, for `order_ids` (all of them accepted with a 202) and the products whose
    stock was `initial_stock` before they were placed."""
    findings = await settlement(runtime, order_ids)
    orders = await orders_of(runtime, order_ids)
    findings.violations += [
        f"order {order.id} is still {order.status}"
        for order in orders.values()
        if order.status not in (CONFIRMED, CANCELLED)
    ]
    findings.violations += await _payments(runtime, orders)
    findings.violations += await _stock(runtime, orders, initial_stock)
    findings.violations += await _notifications(runtime, orders)
    findings.violations += await _dead_letters(runtime)
    return findings


async def _payments(runtime: Runtime, orders: dict[str, Order]) -> list[str]:
    violations = []
    async with runtime.platform.databases["payments"].read(fresh=True) as session:
        payments = {
            p.order_id: p
            for p in await session.scalars(
                select(Payment).where(Payment.order_id.in_(list(orders)))
            )
        }
        ledger: dict[str, Counter] = {}
        for entry in await session.scalars(select(LedgerEntry)):
            ledger.setdefault(entry.payment_id, Counter())[entry.kind] += entry.amount
    for order in orders.values():
        payment = payments.get(order.id)
        moved = ledger.get(payment.id, Counter()) if payment is not None else Counter()
        if moved["charge"] > (payment.amount if payment is not None else 0):
            violations.append(f"order {order.id} was charged {moved['charge']}: more than once")
        if order.status == CONFIRMED:
            if payment is None or moved["charge"] != order.total_amount or moved["refund"]:
                violations.append(f"confirmed order {order.id}: ledger {dict(moved)}")
        elif order.status == CANCELLED and moved["charge"] != moved["refund"]:
            violations.append(f"cancelled order {order.id} kept money: ledger {dict(moved)}")
        elif order.status == CANCELLED and moved["charge"] and payment.status != REFUNDED:
            violations.append(f"cancelled order {order.id}: payment {payment.status}")
    return violations


async def _stock(
    runtime: Runtime, orders: dict[str, Order], initial_stock: dict[str, int]
) -> list[str]:
    sold: Counter = Counter()
    for order in orders.values():
        if order.status == CONFIRMED:
            for item in order.items:
                sold[item.product_id] += item.quantity
    async with runtime.platform.databases["catalog"].read(fresh=True) as session:
        stock = {
            p.id: p.stock
            for p in await session.scalars(select(Product).where(Product.id.in_(initial_stock)))
        }
    return [
        f"product {product}: {initial} at first, {stock[product]} on hand + {sold[product]} sold"
        for product, initial in initial_stock.items()
        if stock[product] + sold[product] != initial or stock[product] < 0
    ]


async def _notifications(runtime: Runtime, orders: dict[str, Order]) -> list[str]:
    settled = {o.id for o in orders.values() if o.status in (CONFIRMED, CANCELLED)}
    async with runtime.platform.databases["notifications"].read(fresh=True) as session:
        notes = Counter(
            await session.scalars(
                select(Notification.reference).where(Notification.reference.in_(settled))
            )
        )
        emails = Counter(
            await session.scalars(
                select(OutgoingEmail.reference).where(OutgoingEmail.reference.in_(settled))
            )
        )
    return [
        f"order {order_id}: {notes[order_id]} notifications, {emails[order_id]} emails"
        for order_id in sorted(settled)
        if notes[order_id] != 1 or emails[order_id] != 1
    ]


async def _dead_letters(runtime: Runtime) -> list[str]:
    violations = []
    consumers = {s.consumer for p in runtime.parts for s in p.subscriptions if not s.is_broadcast}
    for db in runtime.platform.all_databases():
        for row in await stored_dead_letters(db):
            violations.append(f"dead letter in {db.name}: {row.consumer} {row.type} {row.error}")
    bus = runtime.platform.bus
    if isinstance(bus, RabbitMQBus):
        for letter in await bus.dead_letters(consumers):
            violations.append(f"dead letter on RabbitMQ: {letter.consumer} {letter.type}")
    return violations
