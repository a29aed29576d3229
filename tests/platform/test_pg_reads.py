"""A `Query` on PostgreSQL runs on a pooled connection's asyncpg outside any transaction
(platform/pg_reads.py): it reads the same rows, with the same Python values, as a read session
does, for every type the services store and for each service's queries; and its failures end
as a session's do (a busy pool is a 503, a broken connection is discarded)."""

import asyncio
import enum
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    Enum,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Uuid,
    bindparam,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.exc import TimeoutError as PoolTimeout

from bazaar.catalog import models as catalog
from bazaar.catalog.service import _PRICES
from bazaar.notifications import models as notifications
from bazaar.notifications.service import _FIRST_PAGE, _NEXT_PAGE
from bazaar.orders import models as orders
from bazaar.orders.cart import _HELD
from bazaar.orders.listing import _ONE_ORDER
from bazaar.platform import schema
from bazaar.platform.db import Database, Timestamp
from bazaar.platform.outbox import _BACKLOG, _UNPUBLISHED
from bazaar.platform.pg_urls import driver_dsn
from bazaar.platform.postgres import PoolSettings, postgres_database
from bazaar.platform.queries import Query
from bazaar.platform.transient import is_transient


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Size(enum.StrEnum):
    SMALL = "small"
    LARGE = "large"


metadata = MetaData()
typed = Table(
    "pg_read_typed",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("price", Numeric(12, 2)),
    Column("ratio", Numeric(6, 3, asdecimal=False)),
    Column("weight", Float),
    Column("colour", Enum(Colour, name="pg_read_colour")),
    Column("size", Enum(Size, native_enum=False, length=10)),
    Column("token", Uuid),
    Column("token_text", Uuid(as_uuid=False)),
    Column("document", JSON),
    Column("binary_document", JSONB),
    Column("made_at", Timestamp()),
    Column("day", Date),
    Column("blob", LargeBinary),
    Column("amount", BigInteger),
    Column("tags", ARRAY(String(20))),
    Column("flag", Boolean),
)
TOKEN = uuid.UUID("0d6f3c7e-8a4b-4c1e-9a53-2f1d9b6c7e10")
MADE = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC)
ROWS = [
    {
        "id": 1,
        "price": Decimal("1999.99"),
        "ratio": 0.125,
        "weight": 1.5,
        "colour": Colour.RED,
        "size": Size.SMALL,
        "token": TOKEN,
        "token_text": str(uuid.uuid4()),
        "document": {"city": "Zürich", "lines": [1, 2]},
        "binary_document": {"a": None, "b": [True]},
        "made_at": MADE,
        "day": date(2026, 2, 28),
        "blob": b"\x00\xffbytes",
        "amount": 2**53 + 1,
        "tags": ["new", "sale"],
        "flag": True,
    },
    *(
        dict.fromkeys(typed.c.keys()) | {"id": n, "colour": Colour.BLUE, "made_at": made_at}
        for n, made_at in ((2, MADE + timedelta(days=1)), (3, MADE - timedelta(days=1)))
    ),
]
EVERYTHING = Query(
    select(typed)
    .where(typed.c.colour.in_(bindparam("colours", expanding=True)))
    .where(typed.c.made_at >= bindparam("since"))
    .order_by(typed.c.id)
)
BY_TOKEN = Query(select(typed.c.id, typed.c.token).where(typed.c.token == bindparam("token")))
OTHERS = Query(
    select(typed.c.id)
    .where(typed.c.id.not_in(bindparam("ids", expanding=True)))
    .order_by(typed.c.id)
)
BACKEND = Query(select(func.pg_backend_pid()))
SLEEP = Query(select(func.pg_sleep(bindparam("seconds", type_=Float))))
MISSING = Query(select(Table("pg_read_nowhere", MetaData(), Column("id", Integer)).c.id))


@pytest.fixture
async def db(url: str) -> AsyncIterator[Database]:
    database = postgres_database("pg_reads", url, PoolSettings(size=2, overflow=0, timeout=0.3))
    tables = {
        catalog.Base.metadata: [catalog.Product.__table__],
        orders.Base.metadata: [
            orders.CartItem.__table__,
            orders.Order.__table__,
            orders.OrderItem.__table__,
        ],
        notifications.Base.metadata: [notifications.Notification.__table__],
        schema.metadata: [schema.outbox_message],
        metadata: [typed],
    }
    async with database.primary.begin() as connection:
        for tables_of, chosen in tables.items():
            await connection.run_sync(tables_of.create_all, tables=chosen)
    yield database
    await database.dispose()


async def through_session(db: Database, query: Query, params: Mapping[str, Any]) -> list[tuple]:
    async with db.read() as session:
        return [tuple(row) for row in await session.execute(query.statement, dict(params))]


async def test_values_of_every_type_read_as_a_session_reads_them(db: Database) -> None:
    async with db.write() as session:
        await session.execute(typed.insert(), ROWS)
    params = {"colours": [Colour.RED, Colour.BLUE], "since": MADE}

    rows = await db.rows(EVERYTHING, params)

    assert rows == await through_session(db, EVERYTHING, params)
    assert [row[0] for row in rows] == [1, 2]
    first = dict(zip(typed.c.keys(), rows[0], strict=True))
    assert first == ROWS[0]
    kinds = {"price": Decimal, "ratio": float, "colour": Colour, "size": Size, "token": uuid.UUID}
    assert all(isinstance(first[name], kind) for name, kind in kinds.items())
    assert first["made_at"].tzinfo is not None
    assert await db.rows(BY_TOKEN, {"token": TOKEN}) == [(1, TOKEN)]
    assert await db.rows(EVERYTHING, {"colours": [], "since": MADE}) == []


async def test_a_list_bound_to_not_in_takes_any_length(db: Database) -> None:
    async with db.write() as session:
        await session.execute(typed.insert(), ROWS)
    for ids in ([], [2], [1, 3, 99], range(1, 4)):
        params = {"ids": list(ids)}
        assert await db.rows(OTHERS, params) == await through_session(db, OTHERS, params)
    assert await db.rows(OTHERS, {"ids": {1, 3}}) == [(2,)]


async def test_the_services_queries_read_as_a_session_reads_them(db: Database) -> None:
    now = MADE
    order_id, customer = str(uuid.uuid4()), str(uuid.uuid4())
    order = {
        "id": order_id,
        "customer_id": customer,
        "status": orders.OrderStatus.CANCELLED,
        "cancel_reason": orders.CancelReason.OUT_OF_STOCK,
        "total_amount": 4200,
        "currency": "EUR",
        "payment_method": "card",
        "payment_id": None,
        "shipping_address": {"city": "Lyon"},
        "created_at": now,
        "updated_at": now + timedelta(seconds=1),
    }
    lines = [
        {
            "order_id": order_id,
            "line": line,
            "product_id": f"p{line}",
            "name": f"Product {line}",
            "quantity": line + 1,
            "unit_price_amount": 700 * line,
            "currency": "EUR",
        }
        for line in range(3)
    ]
    products = [
        {
            "id": f"p{n}",
            "sku": f"sku-{n}",
            "name": f"Thé n°{n}",
            "description": "",
            "category": "tea",
            "price_amount": 2**40 + n,
            "currency": "EUR",
            "stock": n,
            "created_at": now,
            "updated_at": now,
            "deleted_at": now if n == 2 else None,
        }
        for n in range(4)
    ]
    cart = [
        {
            "customer_id": customer,
            "product_id": f"p{n}",
            "quantity": n + 1,
            "created_at": now + timedelta(minutes=3 - n),
            "updated_at": now,
        }
        for n in range(3)
    ]
    notes = [
        {
            "id": f"n{n:02}",
            "user_id": customer,
            "kind": "order.confirmed",
            "reference": f"r{n}",
            "subject": "Votre commande",
            "body": "…",
            "created_at": now + timedelta(minutes=n),
            "read_at": now if n % 2 else None,
        }
        for n in range(5)
    ]
    outbox = [
        {
            "id": f"m{n}",
            "type": "order.placed",
            "key": "k",
            "envelope": b"\x01\x02" * n,
            "created_at": now,
            "published_at": None,
        }
        for n in range(3)
    ]
    async with db.write() as session:
        for table, rows in (
            (orders.Order.__table__, [order]),
            (orders.OrderItem.__table__, lines),
            (catalog.Product.__table__, products),
            (orders.CartItem.__table__, cart),
            (notifications.Notification.__table__, notes),
            (schema.outbox_message, outbox),
        ):
            await session.execute(table.insert(), rows)
    queries: list[tuple[Query, dict[str, Any], int]] = [
        (_ONE_ORDER, {"order_id": order_id}, 3),
        (_ONE_ORDER, {"order_id": "no such order"}, 0),
        (_PRICES, {"ids": ["p0", "p1", "p2", "p9"]}, 2),
        (_HELD, {"customer_id": customer}, 3),
        (_FIRST_PAGE, {"user_id": customer, "limit": 3}, 3),
        (_NEXT_PAGE, {"user_id": customer, "limit": 10, "before": "n03"}, 3),
        (_UNPUBLISHED, {"limit": 2}, 2),
        (_BACKLOG, {}, 1),
    ]
    for query, params, count in queries:
        rows = await db.rows(query, params)
        assert len(rows) == count
        assert sorted(rows) == sorted(await through_session(db, query, params))
    assert await db.rows_by_id(_ONE_ORDER, {"order_id": order_id}) == await db.rows(
        _ONE_ORDER, {"order_id": order_id}
    )


async def test_an_error_of_the_server_s_leaves_its_connection_in_the_pool(db: Database) -> None:
    [(backend,)] = await db.rows(BACKEND, {})
    with pytest.raises(Exception, match="pg_read_nowhere") as raised:
        await db.rows(MISSING, {})
    assert not is_transient(raised.value)  # a bug, not an outage: a 500, as through a session
    assert await db.rows(BACKEND, {}) == [(backend,)]
    assert db.primary.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_a_broken_connection_is_transient_and_discarded(db: Database, url: str) -> None:
    [(backend,)] = await db.rows(BACKEND, {})
    other = await asyncpg.connect(driver_dsn(url))
    try:
        assert await other.fetchval("SELECT pg_terminate_backend($1)", backend)
    finally:
        await other.close()

    with pytest.raises(Exception) as raised:
        await db.rows(BACKEND, {})

    assert is_transient(raised.value)  # the request answers 503, a handler retries
    [(again,)] = await db.rows(BACKEND, {})
    assert again != backend
    assert db.primary.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_a_read_cancelled_mid_statement_discards_its_connection(db: Database) -> None:
    [(backend,)] = await db.rows(BACKEND, {})
    reading = asyncio.create_task(db.rows(SLEEP, {"seconds": 5.0}))
    await asyncio.sleep(0.2)
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading

    assert db.primary.pool.checkedout() == 0  # type: ignore[attr-defined]
    [(again,)] = await db.rows(BACKEND, {})
    assert again != backend


async def test_a_busy_pool_fails_within_its_timeout_as_a_session_does(db: Database) -> None:
    async with db.primary.connect() as first, db.primary.connect() as second:
        await first.exec_driver_sql("SELECT 1")
        await second.exec_driver_sql("SELECT 1")
        with pytest.raises(PoolTimeout) as raised:
            await db.rows(BACKEND, {})
    assert is_transient(raised.value)  # 503 with Retry-After
    assert await db.rows(BACKEND, {})


async def test_a_server_that_refuses_connections_is_transient() -> None:
    db = postgres_database("pg_reads_refused", "postgresql://postgres@127.0.0.1:9/nowhere")
    try:
        with pytest.raises(Exception) as raised:
            await db.rows(BACKEND, {})
        assert is_transient(raised.value)  # 503 with Retry-After, as through a session
    finally:
        await db.dispose()
