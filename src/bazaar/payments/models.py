"""Payments' tables: one payment per order, its ledger, and tombstones of cancelled orders."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bazaar.platform.db import Timestamp
from bazaar.platform.money import Money


class PaymentStatus(StrEnum):
    """What became of a payment."""

    SUCCEEDED = "succeeded"
    DECLINED = "declined"
    FAILED = "failed"
    REFUNDED = "refunded"


class Base(DeclarativeBase):
    type_annotation_map = {datetime: Timestamp()}


class Payment(Base):
    """The charge of one order. `refunded` means refunded in full; a partly refunded payment
    stays `succeeded` with a non-zero `refunded_amount`."""

    __tablename__ = "payment"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(64), unique=True)
    customer_id: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(20))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    refunded_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    provider_charge_id: Mapped[str | None] = mapped_column(String(100))
    decline_code: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    @property
    def total(self) -> Money:
        return Money(self.amount, self.currency)

    @property
    def refunded(self) -> Money:
        return Money(self.refunded_amount, self.currency)

    @property
    def refundable(self) -> Money:
        """What is left to give back: nothing unless the charge was captured."""
        captured = self.status in (PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED)
        return Money(self.amount - self.refunded_amount if captured else 0, self.currency)


class LedgerEntry(Base):
    """One movement of money with the provider: a captured charge, or a refund of it."""

    __tablename__ = "ledger_entry"
    __table_args__ = (UniqueConstraint("kind", "provider_reference"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payment.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    """`charge` (money in) or `refund` (money out)."""
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    provider_reference: Mapped[str] = mapped_column(String(100))
    """The provider's charge or refund id."""
    idempotency_key: Mapped[str] = mapped_column(String(400))
    created_at: Mapped[datetime]


class CancelledOrder(Base):
    """An order cancelled before any payment was taken: a late `stock.reserved` charges
    nothing."""

    __tablename__ = "cancelled_order"

    order_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(String(50))
    cancelled_at: Mapped[datetime]
