"""Payments' use cases on real SQLite: the sandbox's cards, exactly-once charges, refunds."""

from dataclasses import dataclass, field

import pytest
from sqlalchemy import func, select

from bazaar.catalog.events import ReservedLine, StockReserved
from bazaar.orders.events import OrderCancelled
from bazaar.payments import handlers, service
from bazaar.payments.models import CancelledOrder, LedgerEntry, Payment
from bazaar.payments.provider import (
    Charge,
    ProviderRefund,
    ProviderTimeout,
    ProviderUnavailable,
)
from bazaar.payments.sandbox import SandboxProvider
from bazaar.payments.settings import PaymentsSettings
from bazaar.platform.bus import RetryPolicy, Subscription, deliver
from bazaar.platform.db import Database
from bazaar.platform.errors import Conflict, Unavailable, Unprocessable
from bazaar.platform.events import Envelope
from bazaar.platform.ids import new_id
from bazaar.platform.money import Money
from tests.payments.conftest import published

TOTAL = Money(2500, "USD")


async def capture(
    db: Database,
    provider: object,
    settings: PaymentsSettings,
    method: str = "pm_card_visa",
    order_id: str | None = None,
) -> Payment | None:
    async with db.write() as session:
        return await service.capture_payment(
            session,
            provider,  # type: ignore[arg-type]
            settings,
            order_id=order_id or new_id(),
            customer_id="customer-1",
            total=TOTAL,
            payment_method=method,
        )


async def refund(
    db: Database,
    provider: object,
    settings: PaymentsSettings,
    payment_id: str,
    amount: Money | None = None,
    key: str = "refund-1",
) -> Payment:
    async with db.write() as session:
        return await service.refund_payment(
            session,
            provider,  # type: ignore[arg-type]
            settings,
            payment_id=payment_id,
            amount=amount,
            idempotency_key=key,
        )


async def ledger(db: Database, payment_id: str) -> list[tuple[str, int]]:
    async with db.read() as session:
        entries = await session.scalars(
            select(LedgerEntry).where(LedgerEntry.payment_id == payment_id).order_by(LedgerEntry.id)
        )
        return [(entry.kind, entry.amount) for entry in entries]


async def payment_of(db: Database, order_id: str) -> Payment | None:
    async with db.read() as session:
        return await session.scalar(select(Payment).where(Payment.order_id == order_id))


def subscription(
    db: Database, provider: object, settings: PaymentsSettings, consumer: str
) -> Subscription:
    subscriptions = handlers.subscriptions(db, provider, settings)  # type: ignore[arg-type]
    return next(s for s in subscriptions if s.consumer == consumer)


def stock_reserved(order_id: str, method: str = "pm_card_visa") -> Envelope:
    return Envelope.wrap(
        StockReserved(
            order_id=order_id,
            customer_id="customer-1",
            total=TOTAL,
            payment_method=method,
            lines=[ReservedLine("product-1", 1)],
        )
    )


def order_cancelled(order_id: str, reason: str = "customer_cancelled") -> Envelope:
    return Envelope.wrap(
        OrderCancelled(order_id=order_id, customer_id="customer-1", reason=reason, total=TOTAL)
    )


async def test_visa_is_captured_once_with_a_ledger_entry(
    db: Database, sandbox: SandboxProvider, settings: PaymentsSettings
) -> None:
    payment = await capture(db, sandbox, settings, "pm_card_visa")
    assert payment is not None and payment.status == "succeeded"
    charges = await sandbox.charges()
    assert charges[payment.order_id].id == payment.provider_charge_id
    assert charges[payment.order_id].amount == TOTAL
    assert await ledger(db, payment.id) == [("charge", 2500)]
    [event] = await published(db, "payment.succeeded")
    assert event["payment_id"] == payment.id and event["amount"] == {
        "amount": 2500,
        "currency": "USD",
    }


@pytest.mark.parametrize(
    ("method", "decline_code"),
    [
        ("pm_card_declined", "card_declined"),
        ("pm_card_insufficient_funds", "insufficient_funds"),
        ("pm_card_made_up", "unknown_payment_method"),
    ],
)
async def test_declining_cards_record_a_declined_payment_and_move_no_money(
    db: Database,
    sandbox: SandboxProvider,
    settings: PaymentsSettings,
    method: str,
    decline_code: str,
) -> None:
    payment = await capture(db, sandbox, settings, method)
    assert payment is not None
    assert (payment.status, payment.decline_code) == ("declined", decline_code)
    assert (await sandbox.charges())[payment.order_id].outcome == "declined"
    assert await ledger(db, payment.id) == []
    [event] = await published(db, "payment.declined")
    assert event["decline_code"] == decline_code
    assert await published(db, "payment.succeeded") == []


async def test_flaky_card_times_out_first_and_is_charged_exactly_once(
    db: Database, sandbox: SandboxProvider, settings: PaymentsSettings
) -> None:
    order_id = new_id()
    with pytest.raises(ProviderTimeout):
        await sandbox.charge(order_id, TOTAL, "pm_card_flaky")
    recorded = (await sandbox.charges())[order_id]
    assert recorded.outcome == "succeeded"

    payment = await capture(db, sandbox, settings, "pm_card_flaky", order_id=order_id)

    assert payment is not None and payment.status == "succeeded"
    assert payment.provider_charge_id == recorded.id
    succeeded = [c for c in (await sandbox.charges()).values() if c.outcome == "succeeded"]
    assert succeeded == [recorded]
    assert await ledger(db, payment.id) == [("charge", 2500)]


async def test_flaky_card_is_captured_through_the_retries(
    db: Database, sandbox: SandboxProvider, settings: PaymentsSettings
) -> None:
    payment = await capture(db, sandbox, settings, "pm_card_flaky")
    assert payment is not None and payment.status == "succeeded"
    charges = await sandbox.charges()
    assert list(charges) == [payment.order_id]
    assert charges[payment.order_id].id == payment.provider_charge_id


@dataclass
class UnreachableProvider:
    """A provider whose every call fails before reaching it."""

    attempts: int = 0

    async def charge(self, idempotency_key: str, amount: Money, payment_method: str) -> Charge:
        self.attempts += 1
        raise ProviderUnavailable("connection refused")

    async def refund(self, idempotency_key: str, charge_id: str, amount: Money) -> ProviderRefund:
        self.attempts += 1
        raise ProviderUnavailable("connection refused")


async def test_unreachable_provider_gives_a_failed_payment_after_every_retry(
    db: Database, settings: PaymentsSettings
) -> None:
    provider = UnreachableProvider()
    payment = await capture(db, provider, settings)
    assert provider.attempts == settings.retry_attempts
    assert payment is not None and payment.status == "failed"
    assert await ledger(db, payment.id) == []
    [event] = await published(db, "payment.failed")
    assert event["order_id"] == payment.order_id


async def test_duplicate_stock_reserved_deliveries_charge_once(
    db: Database, sandbox: SandboxProvider, settings: PaymentsSettings
) -> None:
    consumer = subscription(db, sandbox, settings, "payments.capture_payment")
    order_id = new_id()
    envelope = stock_reserved(order_id)
    # The same message redelivered, and the same event published again as a new message.
    for message in (envelope, envelope, stock_reserved(order_id)):
        assert await deliver(consumer, message, RetryPolicy(attempts=1))
    async with db.read() as session:
        assert await session.scalar(select(func.count()).select_from(Payment)) == 1
    assert len(await sandbox.charges()) == 1
    assert len(await published(db, "payment.succeeded")) == 1


async def test_cancel_after_capture_refunds_once(
    db: Database, sandbox: SandboxProvider, settings: PaymentsSettings
) -> None:
    payment = await capture(db, sandbox, settings)
    assert payment is not None
    consumer = subscription(db, sandbox, settings, "payments.refund_cancelled_order")
    envelope = order_cancelled(payment.order_id)
    for message in (envelope, envelope, order_cancelled(payment.order_id)):
        assert await deliver(consumer, message, RetryPolicy(attempts=1))

    refunded = await payment_of(db, payment.order_id)
    assert refunded is not None
    assert (refunded.status, refunded.refunded_amount) == ("refunded", 2500)
    [provider_refund] = (await sandbox.refunds()).values()
    assert (provider_refund.charge_id, provider_refund.amount) == (
        payment.provider_charge_id,
        TOTAL,
    )
    assert await ledger(db, payment.id) == [("charge", 2500), ("refund", 2500)]
    [event] = await published(db, "payment.refunded")
    assert event["refunded_total"] == {"amount": 2500, "currency": "USD"}


async def test_cancel_refunds_only_what_an_admin_left(
    db: Database, sandbox: SandboxProvider, settings: PaymentsSettings
) -> None:
    payment = await capture(db, sandbox, settings)
    assert payment is not None
    await refund(db, sandbox, settings, payment.id, Money(1000, "USD"))
    consumer = subscription(db, sandbox, settings, "payments.refund_cancelled_order")
    assert await deliver(consumer, order_cancelled(payment.order_id), RetryPolicy(attempts=1))
    amounts = sorted(r.amount.amount for r in (await sandbox.refunds()).values())
    assert amounts == [1000, 1500]
    assert await ledger(db, payment.id) == [("charge", 2500), ("refund", 1000), ("refund", 1500)]


async def test_cancel_before_any_payment_stops_a_late_charge(
    db: Database, sandbox: SandboxProvider, settings: PaymentsSettings
) -> None:
    order_id = new_id()
    cancel = subscription(db, sandbox, settings, "payments.refund_cancelled_order")
    charge = subscription(db, sandbox, settings, "payments.capture_payment")
    assert await deliver(cancel, order_cancelled(order_id), RetryPolicy(attempts=1))
    assert await deliver(charge, stock_reserved(order_id), RetryPolicy(attempts=1))
    async with db.read() as session:
        assert await session.get(CancelledOrder, order_id) is not None
    assert await payment_of(db, order_id) is None
    assert await sandbox.charges() == {}
    assert await published(db, "payment.succeeded") == []


async def test_cancel_of_a_declined_payment_refunds_nothing(
    db: Database, sandbox: SandboxProvider, settings: PaymentsSettings
) -> None:
    payment = await capture(db, sandbox, settings, "pm_card_declined")
    assert payment is not None
    async with db.write() as session:
        await service.refund_cancelled_order(
            session, sandbox, settings, order_id=payment.order_id, reason="payment_declined"
        )
    assert await sandbox.refunds() == {}
    declined = await payment_of(db, payment.order_id)
    assert declined is not None and declined.status == "declined"


async def test_partial_then_full_refund(
    db: Database, sandbox: SandboxProvider, settings: PaymentsSettings
) -> None:
    payment = await capture(db, sandbox, settings)
    assert payment is not None
    partly = await refund(db, sandbox, settings, payment.id, Money(1000, "USD"), key="first")
    assert (partly.status, partly.refunded_amount) == ("succeeded", 1000)
    rest = await refund(db, sandbox, settings, payment.id, None, key="second")
    assert (rest.status, rest.refunded_amount) == ("refunded", 2500)
    assert sorted(r.amount.amount for r in (await sandbox.refunds()).values()) == [1000, 1500]
    assert [e["amount"]["amount"] for e in await published(db, "payment.refunded")] == [1000, 1500]
    with pytest.raises(Conflict):
        await refund(db, sandbox, settings, payment.id, None, key="third")


@pytest.mark.parametrize(
    "amount", [Money(2501, "USD"), Money(0, "USD"), Money(-5, "USD"), Money(100, "EUR")]
)
async def test_refund_outside_what_is_left_is_unprocessable(
    db: Database, sandbox: SandboxProvider, settings: PaymentsSettings, amount: Money
) -> None:
    payment = await capture(db, sandbox, settings)
    assert payment is not None
    with pytest.raises(Unprocessable):
        await refund(db, sandbox, settings, payment.id, amount)
    assert await sandbox.refunds() == {}
    assert await ledger(db, payment.id) == [("charge", 2500)]


async def test_refund_of_a_payment_that_did_not_succeed_is_a_conflict(
    db: Database, sandbox: SandboxProvider, settings: PaymentsSettings
) -> None:
    payment = await capture(db, sandbox, settings, "pm_card_insufficient_funds")
    assert payment is not None
    with pytest.raises(Conflict):
        await refund(db, sandbox, settings, payment.id)
    assert await sandbox.refunds() == {}


@dataclass
class LossyRefunds:
    """The sandbox, except that the responses to the first `lost` refunds never arrive."""

    sandbox: SandboxProvider
    lost: int
    calls: list[str] = field(default_factory=list)

    async def charge(self, idempotency_key: str, amount: Money, payment_method: str) -> Charge:
        return await self.sandbox.charge(idempotency_key, amount, payment_method)

    async def refund(self, idempotency_key: str, charge_id: str, amount: Money) -> ProviderRefund:
        self.calls.append(idempotency_key)
        made = await self.sandbox.refund(idempotency_key, charge_id, amount)
        if len(self.calls) <= self.lost:
            raise ProviderTimeout("response lost")
        return made


async def test_refund_whose_responses_are_lost_gives_money_back_once(
    db: Database, sandbox: SandboxProvider, settings: PaymentsSettings
) -> None:
    payment = await capture(db, sandbox, settings)
    assert payment is not None
    provider = LossyRefunds(sandbox, lost=settings.retry_attempts)
    with pytest.raises(Unavailable):
        await refund(db, provider, settings, payment.id, key="k")
    unchanged = await payment_of(db, payment.order_id)
    assert unchanged is not None and unchanged.refunded_amount == 0

    # The client retries with the same key: the provider answers with the refund it made.
    refunded = await refund(db, provider, settings, payment.id, key="k")
    assert refunded.status == "refunded"
    assert len(await sandbox.refunds()) == 1
    assert await ledger(db, payment.id) == [("charge", 2500), ("refund", 2500)]
