"""Orders' tables: carts, orders and their lines, on every order shard."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from bazaar.platform.db import Timestamp
from bazaar.platform.money import Money


class OrderStatus(StrEnum):
    """What an order is: `pending` until the checkout saga settles it."""

    PENDING = "pending"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"


class CancelReason(StrEnum):
    """Why an order was cancelled (`cancel_reason`)."""

    OUT_OF_STOCK = "out_of_stock"
    PAYMENT_DECLINED = "payment_declined"
    PAYMENT_FAILED = "payment_failed"
    CUSTOMER_CANCELLED = "customer_cancelled"


class Base(DeclarativeBase):
    type_annotation_map = {datetime: Timestamp(), dict[str, Any]: JSON()}


class CartItem(Base):
    """A product in a customer's cart; its price is the catalog's at the time it is shown."""

    __tablename__ = "cart_item"

    customer_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    product_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    quantity: Mapped[int]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Order(Base):
    # "order" is a reserved word in SQL
    __tablename__ = "customer_order"
    __table_args__ = (
        Index("ix_customer_order_customer_id_id", "customer_id", "id"),
        # the admin listing walks every shard newest first
        Index("ix_customer_order_created_at_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36))
    status: Mapped[str] = mapped_column(String(20))
    cancel_reason: Mapped[str | None] = mapped_column(String(40))
    total_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    payment_method: Mapped[str] = mapped_column(String(100))
    payment_id: Mapped[str | None] = mapped_column(String(100))
    shipping_address: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    items: Mapped[list["OrderItem"]] = relationship(
        order_by="OrderItem.line", lazy="selectin", cascade="all, delete-orphan"
    )

    @property
    def total(self) -> Money:
        return Money(self.total_amount, self.currency)


class OrderItem(Base):
    """One line of an order, priced when the order was placed."""

    __tablename__ = "order_item"

    order_id: Mapped[str] = mapped_column(ForeignKey("customer_order.id"), primary_key=True)
    line: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[str] = mapped_column(String(100))
    # kept so that the order still says what was bought after the product changes
    name: Mapped[str] = mapped_column(Text)
    quantity: Mapped[int]
    unit_price_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))

    @property
    def unit_price(self) -> Money:
        return Money(self.unit_price_amount, self.currency)
