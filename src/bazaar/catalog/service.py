"""Catalog's product use cases: create, change, delete, look up, list; categories.

Every change records `product.updated` (ProductUpdated) in its own transaction, so caches on
every instance learn of it.
"""

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, select
from sqlalchemy.exc import IntegrityError

from bazaar.catalog import search
from bazaar.catalog.events import ProductUpdated
from bazaar.catalog.listings import Listing, ProductListings, listing_body
from bazaar.catalog.models import PRODUCT_COLUMNS, Category, Product, ProductRow
from bazaar.catalog.pages import Page, ProductPages
from bazaar.platform import outbox
from bazaar.platform.clock import utcnow
from bazaar.platform.db import Database, ReadSession, WriteSession
from bazaar.platform.errors import Conflict, NotFound
from bazaar.platform.idempotency import Claim
from bazaar.platform.ids import new_id
from bazaar.platform.money import Money
from bazaar.platform.queries import Query
from bazaar.platform.statements import insert_ignoring_duplicates, inserting, run
from bazaar.platform.unit_of_work import UnitOfWork

AnySession = ReadSession | WriteSession
_PRODUCT_TABLE = cast(Table, Product.__table__)
_INSERT_PRODUCT = inserting(_PRODUCT_TABLE, ProductRow._fields)
_LIVE = _PRODUCT_TABLE.c.deleted_at.is_(None)
_LIVE_PRODUCT = Query(select(*PRODUCT_COLUMNS).where(_PRODUCT_TABLE.c.id == bindparam("id"), _LIVE))
"""A live product by id, in one statement on the driver (`Database.rows`): its page's read."""
_LIVE_PRODUCTS = Query(
    select(*PRODUCT_COLUMNS)
    .where(_PRODUCT_TABLE.c.id.in_(bindparam("ids", expanding=True)), _LIVE)
    .order_by(_PRODUCT_TABLE.c.id)
)
"""The live products among some ids, by id: what orders quotes from another process."""


@dataclass(frozen=True, slots=True)
class NewProduct:
    sku: str
    name: str
    category: str
    price: Money
    description: str = ""
    stock: int = 0


@dataclass(frozen=True, slots=True)
class ProductChanges:
    """The fields of a product to change; None leaves a field as it is."""

    sku: str | None = None
    name: str | None = None
    description: str | None = None
    category: str | None = None
    price: Money | None = None
    stock: int | None = None


@dataclass(frozen=True, slots=True)
class ListingQuery:
    """A page of the listing: `limit` live products after the id `after`, of `category`, whose
    name contains `query`."""

    limit: int
    after: str | None = None
    category: str | None = None
    query: str | None = None


class CatalogWork(UnitOfWork):
    """Catalog's unit of work for one request: its database, and the caches of product pages
    and listings."""

    def __init__(
        self,
        db: Database,
        pages: ProductPages,
        listings: ProductListings,
        *,
        claim: Claim | None = None,
    ) -> None:
        super().__init__(db, claim=claim)
        self.pages = pages
        self.listings = listings


async def product_page(db: Database, pages: ProductPages, product_id: str) -> Page:
    """The product's page, from the caches or else read from the primary: a page is cached for
    up to the staleness bound, and a replica's lag would add to it."""

    async def load() -> ProductRow:
        found = await db.rows(_LIVE_PRODUCT, {"id": product_id}, fresh=True)
        if not found:
            raise NotFound("No such product")
        return ProductRow._make(found[0])

    return await pages.fetch(product_id, load)


async def product_listing(work: CatalogWork, key: str, wanted: ListingQuery) -> Listing:
    """A page of the listing, `key` naming it in the edge cache, from there or else read: on
    the primary when it is to be cached, as a product page is (a replica's lag would add to
    the staleness bound), else where reads go."""

    async def load() -> bytes:
        products = await list_products(
            work.db,
            limit=wanted.limit + 1,
            after=wanted.after,
            category=wanted.category,
            query=wanted.query,
            fresh=work.listings.cached,
        )
        return listing_body(products, wanted.limit)

    return await work.listings.fetch(key, load)


async def products_on_sale(db: Database, product_ids: Collection[str]) -> list[ProductRow]:
    """The live products among `product_ids`, by id (unknown ids are left out), read where
    reads go: how orders quotes from another process."""
    if not product_ids:
        return []
    found = await db.rows(_LIVE_PRODUCTS, {"ids": list(set(product_ids))})
    return [ProductRow._make(row) for row in found]


_PRICES = Query(
    select(
        _PRODUCT_TABLE.c.id,
        _PRODUCT_TABLE.c.name,
        _PRODUCT_TABLE.c.price_amount,
        _PRODUCT_TABLE.c.currency,
        _PRODUCT_TABLE.c.stock,
    ).where(_PRODUCT_TABLE.c.id.in_(bindparam("ids", expanding=True)), _LIVE)
)


async def prices_of(db: Database, product_ids: Collection[str]) -> list[tuple[Any, ...]]:
    """`(id, name, price_amount, currency, stock)` of the live products among `product_ids`,
    read on the primary (an order is priced at the current price, not at a replica's older
    one), in one statement on the driver itself where it can (`Database.rows`)."""
    return await db.rows(_PRICES, {"ids": list(set(product_ids))}, fresh=True)


async def get_product(session: AnySession, product_id: str) -> Product:
    product = await session.get(Product, product_id)
    if product is None or product.deleted_at is not None:
        raise NotFound("No such product")
    return product


async def list_products(
    db: Database,
    *,
    limit: int,
    after: str | None = None,
    category: str | None = None,
    query: str | None = None,
    fresh: bool = False,
) -> list[ProductRow]:
    """Up to `limit` live products in id (creation) order after the id `after`; `query`, a
    case-insensitive part of the name, is looked up in an index (`search`). On the primary
    when `fresh`, else where reads go."""
    params = search.listing_params(limit, after, category, query)
    found: list[ProductRow] = []
    for statement in search.listing_statements(db.dialect, after, category, query):
        found = [ProductRow._make(row) for row in await db.rows(statement, params, fresh=fresh)]
        if len(found) == limit:
            break
    return found


async def list_categories(session: ReadSession) -> list[tuple[str, int]]:
    """Every category that has live products, by name, with how many."""
    statement = (
        select(Category.name, func.count(Product.id))
        .join(Product, Product.category == Category.name)
        .where(Product.deleted_at.is_(None))
        .group_by(Category.name)
        .order_by(Category.name)
    )
    return [(name, count) for name, count in (await session.execute(statement)).all()]


async def create_product(session: WriteSession, data: NewProduct) -> Product:
    """Add a product; Conflict when a live product has its sku (the unique index decides, so
    two concurrent writers cannot both have it). Written with one Core insert, not the ORM's
    unit of work, on the driver (platform/statements.py): the product is returned as written,
    not loaded into the session."""
    now = utcnow()
    product = Product(
        id=new_id(),
        sku=data.sku,
        name=data.name,
        description=data.description,
        category=data.category,
        price_amount=data.price.amount,
        currency=data.price.currency,
        stock=data.stock,
        created_at=now,
        updated_at=now,
    )
    row = {key: getattr(product, key) for key in ProductRow._fields}
    try:
        await run(session, _INSERT_PRODUCT, row)
    except IntegrityError:
        raise Conflict(f"A product with sku {data.sku!r} already exists") from None
    await use_categories(session, [data.category])
    outbox.add(session, ProductUpdated(product_id=product.id, updated_at=now))
    return product


async def update_product(
    session: WriteSession, product_id: str, changes: ProductChanges
) -> Product:
    """Change the given fields of a live product; Conflict when the new sku is taken."""
    product = await get_product(session, product_id)
    if changes.sku is not None and changes.sku != product.sku:
        await _check_sku_free(session, changes.sku)
    values: dict[str, Any] = {
        "sku": changes.sku,
        "name": changes.name,
        "description": changes.description,
        "category": changes.category,
        "stock": changes.stock,
    }
    if changes.price is not None:
        values["price_amount"] = changes.price.amount
        values["currency"] = changes.price.currency
    changed = {
        field: value
        for field, value in values.items()
        if value is not None and getattr(product, field) != value
    }
    if not changed:
        return product
    for field, value in changed.items():
        setattr(product, field, value)
    product.updated_at = utcnow()
    if "category" in changed:
        await use_categories(session, [product.category])
    outbox.add(session, ProductUpdated(product_id=product.id, updated_at=product.updated_at))
    await _flush(session)
    return product


async def delete_product(session: WriteSession, product_id: str) -> None:
    """Soft-delete: the product stops being listed, fetched and sold; orders keep its id."""
    product = await get_product(session, product_id)
    product.deleted_at = product.updated_at = utcnow()
    outbox.add(session, ProductUpdated(product_id=product.id, updated_at=product.updated_at))


async def use_categories(session: WriteSession, names: Iterable[str]) -> None:
    """Record the categories that products now use (once each)."""
    for name in set(names):  # one statement each: a known name is skipped by the database
        await insert_ignoring_duplicates(
            session, Category.__table__, name=name, created_at=utcnow()
        )


async def _check_sku_free(session: WriteSession, sku: str) -> None:
    taken = await session.scalar(
        select(func.count()).where(Product.sku == sku, Product.deleted_at.is_(None))
    )
    if taken:
        raise Conflict(f"A product with sku {sku!r} already exists")


async def _flush(session: WriteSession) -> None:
    # Two concurrent writers may both pass the sku check; the unique index decides.
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict("A product with this sku already exists") from None
