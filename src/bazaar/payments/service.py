"""Payments' use cases: capture an order's payment, refund it, show it.

Every provider call carries an idempotency key (the order id for its charge), so a retry, a
redelivered event or a replayed request never moves money twice. The work of one order runs
one transaction at a time (`_serialize_on_order`): a charge and a cancellation of the same
order cannot interleave.
"""

from sqlalchemy import bindparam, literal, select, text, union_all

from bazaar.payments.events import (
    PaymentDeclined,
    PaymentFailed,
    PaymentRefunded,
    PaymentSucceeded,
)
from bazaar.payments.models import CancelledOrder, LedgerEntry, Payment, PaymentStatus
from bazaar.payments.provider import (
    PaymentProvider,
    ProviderError,
    ProviderRejected,
    with_retries,
)
from bazaar.payments.settings import PaymentsSettings
from bazaar.platform import outbox
from bazaar.platform.auth import Principal
from bazaar.platform.clock import utcnow
from bazaar.platform.db import Database, ReadSession, WriteSession
from bazaar.platform.errors import Conflict, FieldError, NotFound, Unavailable, Unprocessable
from bazaar.platform.idempotency import Claim
from bazaar.platform.ids import new_id
from bazaar.platform.money import Money
from bazaar.platform.observability import log
from bazaar.platform.queries import Query
from bazaar.platform.statements import insert_ignoring_duplicates, insert_instances, run
from bazaar.platform.unit_of_work import UnitOfWork


class PaymentsWork(UnitOfWork):
    """Payments' unit of work for one request: its database, and the provider that moves the
    money, with the retries its settings allow."""

    def __init__(
        self,
        db: Database,
        provider: PaymentProvider,
        settings: PaymentsSettings,
        *,
        claim: Claim | None = None,
    ) -> None:
        super().__init__(db, claim=claim)
        self.provider = provider
        self.settings = settings


async def capture_payment(
    session: WriteSession,
    provider: PaymentProvider,
    settings: PaymentsSettings,
    *,
    order_id: str,
    customer_id: str,
    total: Money,
    payment_method: str,
) -> Payment | None:
    """Charge an order once, with the order id as the provider's idempotency key.

    Does nothing (None) when the order already has a payment or was cancelled before one was
    taken. Timeouts and unavailability are retried; when every attempt failed the payment is
    recorded `failed`. Emits payment.succeeded, payment.declined or payment.failed.
    """
    await _serialize_on_order(session, order_id)
    seen = {kind for (kind,) in (await run(session, _SEEN, {"order_id": order_id})).rows}
    if "paid" in seen:
        return None
    if "cancelled" in seen:
        log.info("payment_skipped_cancelled_order", order_id=order_id)
        return None
    now = utcnow()
    payment = Payment(
        id=new_id(),
        order_id=order_id,
        customer_id=customer_id,
        amount=total.amount,
        currency=total.currency,
        refunded_amount=0,
        created_at=now,
        updated_at=now,
    )
    try:
        charge = await with_retries(
            lambda: provider.charge(order_id, total, payment_method),
            settings.retry_attempts,
            settings.retry_backoff,
        )
    except ProviderError as error:
        # A timeout on the last attempt may hide a charge the provider did make; the
        # provider's records under the order id are where an operator reconciles it.
        log.warning("payment_failed", order_id=order_id, error=type(error).__name__)
        payment.status = PaymentStatus.FAILED
        await insert_instances(session, [payment])
        outbox.add(
            session,
            PaymentFailed(payment_id=payment.id, order_id=order_id, customer_id=customer_id),
        )
        return payment
    payment.provider_charge_id = charge.id
    if charge.outcome != "succeeded":
        payment.status = PaymentStatus.DECLINED
        payment.decline_code = charge.decline_code or "card_declined"
        await insert_instances(session, [payment])
        outbox.add(
            session,
            PaymentDeclined(
                payment_id=payment.id,
                order_id=order_id,
                customer_id=customer_id,
                decline_code=payment.decline_code,
            ),
        )
        return payment
    payment.status = PaymentStatus.SUCCEEDED
    await insert_instances(session, [payment])
    await insert_instances(session, [_entry(payment, "charge", total, charge.id, order_id)])
    outbox.add(
        session,
        PaymentSucceeded(
            payment_id=payment.id, order_id=order_id, customer_id=customer_id, amount=total
        ),
    )
    return payment


async def refund_cancelled_order(
    session: WriteSession,
    provider: PaymentProvider,
    settings: PaymentsSettings,
    *,
    order_id: str,
    reason: str,
) -> Payment | None:
    """Give back what is left of a cancelled order's captured payment.

    With no payment yet, leave a tombstone so that a late stock.reserved charges nothing.
    The provider key is fixed per order, so a redelivered cancellation refunds once.
    """
    await _serialize_on_order(session, order_id)
    payment = await _payment_of_order(session, order_id)
    if payment is None:
        await insert_ignoring_duplicates(
            session,
            CancelledOrder.__table__,
            order_id=order_id,
            reason=reason[:50],
            cancelled_at=utcnow(),
        )
        return None
    rest = payment.refundable
    if rest.amount > 0:
        await _refund(session, provider, settings, payment, rest, f"refund:{order_id}:cancel")
    return payment


async def refund_payment(
    session: WriteSession,
    provider: PaymentProvider,
    settings: PaymentsSettings,
    *,
    payment_id: str,
    amount: Money | None,
    idempotency_key: str,
) -> Payment:
    """Refund `amount` (by default all that is left) of a captured payment.

    Conflict when the payment was never captured or is already refunded in full;
    Unprocessable when `amount` is not positive, in another currency, or more than is left.
    """
    order_id = await session.scalar(select(Payment.order_id).where(Payment.id == payment_id))
    if order_id is None:
        raise NotFound("No such payment")
    await _serialize_on_order(session, order_id)
    payment = await session.get_one(Payment, payment_id, populate_existing=True)
    if payment.status not in (PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED):
        raise Conflict(f"Only a captured payment can be refunded; this one is {payment.status}")
    rest = payment.refundable
    if rest.amount == 0:
        raise Conflict("This payment is already refunded in full")
    wanted = amount or rest
    if wanted.currency != payment.currency:
        raise Unprocessable(
            "The refund must be in the payment's currency",
            [FieldError(["body", "amount", "currency"], f"expected {payment.currency}")],
        )
    if not 0 < wanted.amount <= rest.amount:
        raise Unprocessable(
            f"The refund must be between 1 and {rest.amount} (what is left of the payment)",
            [FieldError(["body", "amount", "amount"], f"expected 1..{rest.amount}")],
        )
    await _refund(session, provider, settings, payment, wanted, idempotency_key)
    return payment


async def refund_on_request(
    work: PaymentsWork, payment_id: str, amount: Money | None, admin_id: str
) -> Payment:
    """Refund a payment as an admin's request asks (`refund_payment`), in its transaction.

    The provider's key is made of the request's own `Idempotency-Key`, the payment and the
    admin: a request retried after a failure refunds once at the provider too.
    """
    return await refund_payment(
        await work.session(),
        work.provider,
        work.settings,
        payment_id=payment_id,
        amount=amount,
        idempotency_key=f"refund:{payment_id}:{admin_id}:{work.idempotency_key}",
    )


async def get_payment(session: ReadSession, principal: Principal, payment_id: str) -> Payment:
    """The payment, for its customer or an admin; NotFound for anybody else."""
    payment = await session.get(Payment, payment_id)
    if payment is None or not principal.may_see(payment.customer_id):
        raise NotFound("No such payment")
    return payment


async def _refund(
    session: WriteSession,
    provider: PaymentProvider,
    settings: PaymentsSettings,
    payment: Payment,
    amount: Money,
    idempotency_key: str,
) -> None:
    charge_id = payment.provider_charge_id
    assert charge_id is not None, "a captured payment has a charge"
    try:
        refund = await with_retries(
            lambda: provider.refund(idempotency_key, charge_id, amount),
            settings.retry_attempts,
            settings.retry_backoff,
        )
    except ProviderRejected as error:
        raise Conflict("The payment provider refused the refund") from error
    except ProviderError as error:
        # Nothing is recorded: a retry with the same key gets the refund if it did happen.
        raise Unavailable("The payment provider did not answer; retry the refund") from error
    payment.refunded_amount += amount.amount
    payment.status = (
        PaymentStatus.REFUNDED
        if payment.refunded_amount >= payment.amount
        else PaymentStatus.SUCCEEDED
    )
    payment.updated_at = utcnow()
    await _record(session, payment, "refund", amount, refund.id, idempotency_key)
    outbox.add(
        session,
        PaymentRefunded(
            payment_id=payment.id,
            order_id=payment.order_id,
            customer_id=payment.customer_id,
            amount=amount,
            refunded_total=payment.refunded,
        ),
    )


async def _record(
    session: WriteSession,
    payment: Payment,
    kind: str,
    amount: Money,
    provider_reference: str,
    idempotency_key: str,
) -> None:
    await session.flush()  # the payment's row before its ledger entry's (a foreign key)
    session.add(_entry(payment, kind, amount, provider_reference, idempotency_key))


def _entry(
    payment: Payment, kind: str, amount: Money, provider_reference: str, idempotency_key: str
) -> LedgerEntry:
    return LedgerEntry(
        id=new_id(),
        payment_id=payment.id,
        kind=kind,
        amount=amount.amount,
        currency=amount.currency,
        provider_reference=provider_reference,
        idempotency_key=idempotency_key,
        created_at=utcnow(),
    )


async def _payment_of_order(session: WriteSession, order_id: str) -> Payment | None:
    return await session.scalar(select(Payment).where(Payment.order_id == order_id))


async def _serialize_on_order(session: WriteSession, order_id: str) -> None:
    """Hold the order's lock until the transaction ends.

    SQLite already runs one write transaction at a time (BEGIN IMMEDIATE). PostgreSQL takes
    an advisory lock, which also covers an order that has no row yet: without it a charge and
    a cancellation could each miss the other's row.
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
            {"key": f"payments:order:{order_id}"},
        )


_SEEN = Query(
    union_all(
        select(literal("paid")).where(Payment.order_id == bindparam("order_id")),
        select(literal("cancelled")).where(CancelledOrder.order_id == bindparam("order_id")),
    )
)
"""Whether an order was charged already, or cancelled before a charge was taken."""
