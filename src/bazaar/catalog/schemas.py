"""Catalog's request and response bodies."""

from datetime import datetime
from typing import Annotated, Any

import msgspec

from bazaar.platform.money import Currency

MAX_AMOUNT = 10**12
MAX_STOCK = 1_000_000_000

# One word: no space nor control character (C1 and U+FEFF too, so that Python's `\s` and
# ECMA-262's, the document's, refuse the same characters).
Sku = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[^\s\x00-\x1f\x7f-\x9f\ufeff]+$")
]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Description = Annotated[str, msgspec.Meta(max_length=10_000)]
CategoryName = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
Amount = Annotated[int, msgspec.Meta(ge=0, le=MAX_AMOUNT)]
Stock = Annotated[int, msgspec.Meta(ge=0, le=MAX_STOCK)]
# Litestar 2 leaves a bound of 0 out of an optional field's schema (it tests the bound's truth):
# the change of a product's stock says its minimum again.
OptionalStock = Annotated[
    int, msgspec.Meta(ge=0, le=MAX_STOCK, extra_json_schema={"extra": {"minimum": 0}})
]


class Price(msgspec.Struct):
    amount: Amount
    currency: Currency


class ProductCreate(msgspec.Struct):
    sku: Sku
    name: Name
    category: CategoryName
    price: Price
    description: Description = ""
    stock: Stock = 0


class ProductUpdate(msgspec.Struct):
    """Any subset of a product's fields; a field left out (or null) stays as it is."""

    sku: Sku | None = None
    name: Name | None = None
    description: Description | None = None
    category: CategoryName | None = None
    price: Price | None = None
    stock: OptionalStock | None = None


class ProductRead(msgspec.Struct):
    id: str
    sku: str
    name: str
    description: str
    category: str
    price: Price
    stock: int
    created_at: datetime
    updated_at: datetime


class CategoryRead(msgspec.Struct):
    name: str
    product_count: int


class CategoryList(msgspec.Struct):
    items: list[CategoryRead]


class JobAccepted(msgspec.Struct):
    job_id: str


class JobRead(msgspec.Struct):
    """A background job. `progress` is the fraction of the file's rows processed, 0.0 to 1.0;
    `result` is `{processed, total, created, updated, failed, errors: [{line, message}]}` with
    `line` the 1-based line of the file (the header is line 1)."""

    id: str
    kind: str
    status: str
    progress: float
    result: dict[str, Any] | None
    error: str | None
