"""Catalog's tables: products, categories, stock reservations and import jobs."""

from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bazaar.platform.db import Timestamp

LIVE = text("deleted_at IS NULL")


class Base(DeclarativeBase):
    type_annotation_map = {datetime: Timestamp()}


NAME_SEARCH = {
    "table": frozenset(
        ["product_name_search"]
        + [f"product_name_search_{part}" for part in ("config", "data", "docsize", "idx")]
    ),
    "index": frozenset(["ix_product_name_trigram"]),
}
"""The index of product names (`search`, migration ffb8b0de9476), which no model describes:
SQLite's FTS5 table and the tables it keeps itself in, PostgreSQL's expression index. A
comparison of the migrations with these models leaves them out (`info["unmodelled"]`)."""
Base.metadata.info["unmodelled"] = NAME_SEARCH


class Product(Base):
    """A product for sale. Deleting it only stamps `deleted_at`: orders keep referring to it.

    A sku is unique among live products, so a deleted product's sku may be used again.
    """

    __tablename__ = "product"
    __table_args__ = (
        CheckConstraint("stock >= 0", name="ck_product_stock_not_negative"),
        CheckConstraint("price_amount >= 0", name="ck_product_price_not_negative"),
        Index("uq_product_live_sku", "sku", unique=True, sqlite_where=LIVE, postgresql_where=LIVE),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    sku: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    category: Mapped[str] = mapped_column(String(100), index=True)
    price_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    stock: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]


class ProductRow(NamedTuple):
    """A product as one statement on the driver reads it (`Database.rows`), its columns in
    this order: the reads that only answer with a product (its page, a listing, the products
    orders quotes) need no ORM instance, which costs more to build than the row to read."""

    id: str
    sku: str
    name: str
    description: str
    category: str
    price_amount: int
    currency: str
    stock: int
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None


PRODUCT_COLUMNS = tuple(Product.__table__.c[name] for name in ProductRow._fields)
"""The product's columns in `ProductRow`'s order: what a read of whole products selects."""


class Category(Base):
    """A category name, recorded the first time a product uses it."""

    __tablename__ = "category"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    created_at: Mapped[datetime]


class StockReservation(Base):
    """What catalog did for one order: `reserved` (units taken), `rejected`, `released`
    (units given back), or `cancelled`: a tombstone for an order cancelled before it was
    seen placed, so a late `order.placed` reserves nothing."""

    __tablename__ = "stock_reservation"

    order_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36))
    status: Mapped[str] = mapped_column(String(20))
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ImportJob(Base):
    """A CSV product import, worked by a job of the platform's queue (catalog/imports.py).
    `processed_rows` is where a resumed import goes on; `errors` lists the bad rows as
    `{line, message}`."""

    __tablename__ = "import_job"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20), index=True)
    total_rows: Mapped[int | None] = mapped_column(Integer)
    processed_rows: Mapped[int] = mapped_column(Integer)
    created_count: Mapped[int] = mapped_column(Integer)
    updated_count: Mapped[int] = mapped_column(Integer)
    failed_count: Mapped[int] = mapped_column(Integer)
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


class ImportFile(Base):
    """The uploaded CSV of a job, kept in the database so any worker instance can read it."""

    __tablename__ = "import_file"

    job_id: Mapped[str] = mapped_column(ForeignKey("import_job.id"), primary_key=True)
    content: Mapped[bytes] = mapped_column(LargeBinary)
