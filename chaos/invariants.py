"""The shop's promises, checked against the databases (and the mail sink) themselves rather
than the API's word.

After a fault and its recovery: every accepted order is settled (confirmed or cancelled), no
payment is captured twice and every captured payment of a cancelled order is refunded, stock
is conserved, every settlement of an order has exactly one in-app notification and one email
(sent again only with the same Message-ID), and nothing sits in a dead-letter store.
"""

import email.parser
import email.policy
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path

from sqlalchemy import select

from bazaar.catalog.models import Product
from bazaar.notifications.models import DeliveryStatus, Notification, OutgoingEmail, WebhookDelivery
from bazaar.notifications.service import ORDER_CANCELLED, ORDER_CONFIRMED
from bazaar.orders.models import Order, OrderStatus
from bazaar.payments.models import LedgerEntry, Payment, PaymentStatus
from bazaar.runtime.cluster.mailsink import SUFFIX
from bazaar.runtime.embedded import Runtime

KIND_OF = {OrderStatus.CONFIRMED: ORDER_CONFIRMED, OrderStatus.CANCELLED: ORDER_CANCELLED}


@dataclass(kw_only=True)
class Counts:
    """What the promises count after a fault: every one but `resent_emails` must be 0."""

    lost: int = 0
    double_charges: int = 0
    kept_money: int = 0
    stock_drift: int = 0
    duplicate_notifications: int = 0
    missing_notifications: int = 0
    missing_emails: int = 0
    resent_emails: int = 0
    """Emails the sink received more than once with the same Message-ID: allowed (at least
    once), after a crash between the send and its record."""
    missing_webhooks: int = 0
    duplicate_webhooks: int = 0
    """Deliveries received again for one event after a 2xx: the contract allows none."""
    dead_letters: int = 0

    def counts(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(Counts)}


@dataclass(kw_only=True)
class Findings(Counts):
    """What the databases say about a set of accepted orders; `violations` says where a
    count is not 0."""

    statuses: Counter = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)

    @property
    def unsettled(self) -> int:
        return sum(
            n
            for status, n in self.statuses.items()
            if status not in (OrderStatus.CONFIRMED, OrderStatus.CANCELLED)
        )


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
        findings.lost += 1
        findings.violations.append(f"order {missing} was accepted but is not in any shard")
    return findings


async def emails_unsent(runtime: Runtime, order_ids: set[str]) -> int:
    """Emails about these orders that the mailer has not sent yet."""
    async with runtime.platform.databases["notifications"].read(fresh=True) as session:
        statuses = await session.scalars(
            select(OutgoingEmail.status).where(OutgoingEmail.reference.in_(order_ids))
        )
        return sum(1 for status in statuses if status != DeliveryStatus.SENT)


async def webhooks_pending(runtime: Runtime) -> int:
    """Webhook deliveries not made yet (nor given up)."""
    async with runtime.platform.databases["notifications"].read(fresh=True) as session:
        statuses = await session.scalars(
            select(WebhookDelivery.status).where(WebhookDelivery.status == DeliveryStatus.PENDING)
        )
        return len(list(statuses))


async def check(
    runtime: Runtime,
    order_ids: set[str],
    initial_stock: dict[str, int],
    mail_folder: Path | None = None,
    webhooks: Counter[tuple[str, str]] | None = None,
) -> Findings:
    """Every promise, for `order_ids` (all of them accepted with a 202) and the products whose
    stock was `initial_stock` before they were placed; with `mail_folder` (the mail sink's),
    every email the databases call sent is there; with `webhooks` (what a receiver subscribed
    to order.confirmed and order.cancelled got, by order and type), each settlement was
    delivered once."""
    findings = await settlement(runtime, order_ids)
    orders = await orders_of(runtime, order_ids)
    for order in orders.values():
        if order.status not in (OrderStatus.CONFIRMED, OrderStatus.CANCELLED):
            findings.lost += 1
            findings.violations.append(f"order {order.id} is still {order.status}")
    await _payments(runtime, orders, findings)
    await _stock(runtime, orders, initial_stock, findings)
    await _notifications(runtime, orders, findings, mail_folder)
    if webhooks is not None:
        _webhooks(orders, webhooks, findings)
    await _dead_letters(runtime, findings)
    return findings


def _webhooks(
    orders: dict[str, Order], received: Counter[tuple[str, str]], findings: Findings
) -> None:
    for order in orders.values():
        if order.status not in KIND_OF:
            continue
        final = (order.id, f"order.{order.status}")
        if received[final] == 0:
            findings.missing_webhooks += 1
            findings.violations.append(f"order {order.id}: no {final[1]} webhook")
        for event_type in ("order.confirmed", "order.cancelled"):
            count = received[(order.id, event_type)]
            if count > 1:
                findings.duplicate_webhooks += count - 1
                findings.violations.append(f"order {order.id}: {event_type} delivered {count}x")


async def _payments(runtime: Runtime, orders: dict[str, Order], findings: Findings) -> None:
    async with runtime.platform.databases["payments"].read(fresh=True) as session:
        payments = {
            p.order_id: p
            for p in await session.scalars(
                select(Payment).where(Payment.order_id.in_(list(orders)))
            )
        }
        ids = [p.id for p in payments.values()]
        ledger: dict[str, Counter] = {}
        for entry in await session.scalars(
            select(LedgerEntry).where(LedgerEntry.payment_id.in_(ids))
        ):
            ledger.setdefault(entry.payment_id, Counter())[entry.kind] += entry.amount
    for order in orders.values():
        payment = payments.get(order.id)
        moved = ledger.get(payment.id, Counter()) if payment is not None else Counter()
        if moved["charge"] > (payment.amount if payment is not None else 0):
            findings.double_charges += 1
            findings.violations.append(f"order {order.id} was charged {moved['charge']}: twice")
        if order.status == OrderStatus.CONFIRMED:
            if payment is None or moved["charge"] != order.total_amount or moved["refund"]:
                findings.kept_money += 1
                findings.violations.append(f"confirmed order {order.id}: ledger {dict(moved)}")
        elif order.status == OrderStatus.CANCELLED and moved["charge"] != moved["refund"]:
            findings.kept_money += 1
            findings.violations.append(f"cancelled order {order.id} kept money: {dict(moved)}")
        elif (
            order.status == OrderStatus.CANCELLED
            and moved["charge"]
            and payment.status != PaymentStatus.REFUNDED
        ):
            findings.kept_money += 1
            findings.violations.append(f"cancelled order {order.id}: payment {payment.status}")


async def _stock(
    runtime: Runtime,
    orders: dict[str, Order],
    initial_stock: dict[str, int],
    findings: Findings,
) -> None:
    """Initial = on hand + sold once every order settled (nothing stays reserved then)."""
    sold: Counter = Counter()
    for order in orders.values():
        if order.status == OrderStatus.CONFIRMED:
            for item in order.items:
                sold[item.product_id] += item.quantity
    async with runtime.platform.databases["catalog"].read(fresh=True) as session:
        stock = {
            p.id: p.stock
            for p in await session.scalars(select(Product).where(Product.id.in_(initial_stock)))
        }
    for product, initial in initial_stock.items():
        drift = stock[product] + sold[product] - initial
        if drift or stock[product] < 0:
            findings.stock_drift += abs(drift)
            findings.violations.append(
                f"product {product}: {initial} at first, {stock[product]} on hand"
                f" + {sold[product]} sold"
            )


async def _notifications(
    runtime: Runtime, orders: dict[str, Order], findings: Findings, mail_folder: Path | None
) -> None:
    """One notification and one email per (order, settlement kind): the final status's kind
    for every settled order, and `order_confirmed` too for one cancelled after confirmation."""
    settled = {o.id: o for o in orders.values() if o.status in KIND_OF}
    async with runtime.platform.databases["notifications"].read(fresh=True) as session:
        notes = Counter(
            (row.reference, row.kind)
            for row in await session.execute(
                select(Notification.reference, Notification.kind).where(
                    Notification.reference.in_(settled)
                )
            )
        )
        emails = {
            row.id: row
            for row in await session.scalars(
                select(OutgoingEmail).where(OutgoingEmail.reference.in_(settled))
            )
        }
    mails = Counter((row.reference, row.kind) for row in emails.values())
    for order_id, order in sorted(settled.items()):
        final = (order_id, KIND_OF[order.status])
        for what, counts in (("notification", notes), ("email", mails)):
            if counts[final] == 0:
                if what == "notification":
                    findings.missing_notifications += 1
                else:
                    findings.missing_emails += 1
                findings.violations.append(f"order {order_id}: no {final[1]} {what}")
    for (reference, kind), count in notes.items():
        if count > 1:
            findings.duplicate_notifications += count - 1
            findings.violations.append(f"order {reference}: {count} {kind} notifications")
    if mail_folder is not None:
        _mail_sink(mail_folder, emails, findings)


def _mail_sink(folder: Path, emails: dict[str, OutgoingEmail], findings: Findings) -> None:
    """Every email recorded sent is in the sink, under its stable Message-ID."""
    received: Counter = Counter()
    parser = email.parser.BytesHeaderParser(policy=email.policy.default)
    for path in folder.glob(f"*{SUFFIX}"):
        message_id = str(parser.parsebytes(path.read_bytes()).get("Message-ID", ""))
        received[message_id.strip("<>").split("@", 1)[0]] += 1
    for email_id, row in emails.items():
        if row.status == DeliveryStatus.SENT and received[email_id] == 0:
            findings.missing_emails += 1
            findings.violations.append(f"email {email_id} ({row.kind}) is sent but not received")
        findings.resent_emails += max(received[email_id] - 1, 0)


async def _dead_letters(runtime: Runtime, findings: Findings) -> None:
    consumers = {s.consumer for p in runtime.parts for s in p.subscriptions if not s.is_broadcast}
    for letter in await runtime.platform.bus.dead_letters(consumers):
        findings.dead_letters += 1
        findings.violations.append(f"dead letter: {letter.consumer} {letter.type} {letter.reason}")
