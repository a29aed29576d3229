"""Statements on a write transaction's driver connection (platform/statements.py), on SQLite
(where the transaction itself begins and ends on the driver: `SqliteWriter`) and on
PostgreSQL: they belong to the transaction (its rollback undoes them, its commit keeps them,
with the ORM's statements of the same transaction), values come back as a session reads them,
and the driver's errors come as SQLAlchemy's."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    delete,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bazaar.platform.db import Database, Timestamp
from bazaar.platform.postgres import postgres_database
from bazaar.platform.queries import Query
from bazaar.platform.sqlite import sqlite_database
from bazaar.platform.statements import (
    insert_ignoring_duplicates,
    insert_instances,
    inserting,
    run,
)
from bazaar.platform.transient import sqlstate


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "driver_item"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    stock: Mapped[int] = mapped_column(Integer)
    changed_at: Mapped[datetime] = mapped_column(Timestamp)


_items = Item.__table__
_metadata = MetaData()
_log = Table("driver_log", _metadata, Column("line", String(100), primary_key=True))

TAKE = Query(
    update(_items)
    .where(_items.c.id == bindparam("item"), _items.c.stock >= bindparam("quantity"))
    .values(stock=_items.c.stock - bindparam("quantity"), changed_at=bindparam("now"))
    .returning(_items.c.stock, _items.c.changed_at)
)
STOCK = Query(select(_items.c.stock).where(_items.c.id == bindparam("item")))
FORGET = Query(delete(_items).where(_items.c.id.in_(bindparam("ids", expanding=True))))
NOW = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC)


async def _created(db: Database) -> Database:
    async with db.primary.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
        await connection.run_sync(_metadata.create_all)
    return db


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path, url: str) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        database = sqlite_database("driver", tmp_path / "driver.db")
    else:
        database = postgres_database("driver", url)
    try:
        yield await _created(database)
    finally:
        await database.dispose()


async def stock(db: Database, item: str) -> int | None:
    found = await db.rows(STOCK, {"item": item}, fresh=True)
    return found[0][0] if found else None


async def test_a_statement_is_part_of_its_transaction(db: Database) -> None:
    async with db.write() as session:
        await insert_instances(session, [Item(id="a", stock=5, changed_at=NOW)])
        taken = await run(session, TAKE, {"item": "a", "quantity": 2, "now": NOW})
        assert taken.rows == [(3, NOW)] and taken.matched == 1  # an aware datetime, as read
        none = await run(session, TAKE, {"item": "a", "quantity": 9, "now": NOW})
        assert none.rows == [] and none.matched == 0
    assert await stock(db, "a") == 3
    with pytest.raises(RuntimeError):
        async with db.write() as session:
            await run(session, TAKE, {"item": "a", "quantity": 3, "now": NOW})
            await insert_instances(session, [Item(id="b", stock=1, changed_at=NOW)])
            raise RuntimeError("the use case failed")
    assert await stock(db, "a") == 3  # both undone
    assert await stock(db, "b") is None


async def test_the_orm_and_the_driver_share_one_transaction(db: Database) -> None:
    async with db.write() as session:
        await insert_instances(session, [Item(id="a", stock=5, changed_at=NOW)])
        session.add(Item(id="b", stock=7, changed_at=NOW))  # flushed at commit
        await session.flush()
        await run(session, TAKE, {"item": "b", "quantity": 1, "now": NOW})  # sees the flush
        found = await session.get(Item, "a")  # the ORM sees the driver's row
        assert found is not None and found.stock == 5
    assert (await stock(db, "a"), await stock(db, "b")) == (5, 6)
    with pytest.raises(RuntimeError):
        async with db.write() as session:
            await run(session, FORGET, {"ids": ["a"]})
            session.add(Item(id="c", stock=1, changed_at=NOW))
            await session.flush()
            raise RuntimeError("the use case failed")
    assert (await stock(db, "a"), await stock(db, "c")) == (5, None)


async def test_a_list_bound_to_in_takes_any_length(db: Database) -> None:
    async with db.write() as session:
        items = [Item(id=str(number), stock=number, changed_at=NOW) for number in range(5)]
        await insert_instances(session, items)
        assert (await run(session, FORGET, {"ids": ["1", "3", "9"]})).matched == 2
        assert (await run(session, FORGET, {"ids": []})).matched == 0
    assert [await stock(db, str(number)) for number in range(5)] == [0, None, 2, None, 4]


async def test_a_duplicate_key_is_an_integrity_error_and_can_be_ignored(db: Database) -> None:
    async with db.write() as session:
        assert await insert_ignoring_duplicates(session, _log, line="one")
        assert not await insert_ignoring_duplicates(session, _log, line="one")
    with pytest.raises(IntegrityError):
        async with db.write() as session:
            await run(session, inserting(_log, ("line",)), {"line": "one"})
    async with db.write() as session:  # the failed transaction left nothing behind
        assert await insert_ignoring_duplicates(session, _log, line="two")


async def test_writers_of_one_database_take_turns(db: Database) -> None:
    async with db.write() as session:
        await insert_instances(session, [Item(id="a", stock=100, changed_at=NOW)])

    async def take_one() -> None:
        async with db.write() as session:
            [(left,)] = (await run(session, STOCK, {"item": "a"})).rows
            await asyncio.sleep(0)  # another writer may run meanwhile, not inside this one
            params = {"item": "a", "quantity": 1, "now": NOW}
            [(after, _)] = (await run(session, TAKE, params)).rows
            assert after == left - 1

    if db.dialect == "postgresql":  # a row lock orders them there: read it FOR UPDATE
        await asyncio.gather(*(take_one_locked(db) for _ in range(20)))
    else:
        await asyncio.gather(*(take_one() for _ in range(20)))
    assert await stock(db, "a") == 80


async def take_one_locked(db: Database) -> None:
    locked = Query(select(_items.c.stock).where(_items.c.id == "a").with_for_update())
    async with db.write() as session:
        [(left,)] = (await run(session, locked)).rows
        await asyncio.sleep(0)
        [(after, _)] = (await run(session, TAKE, {"item": "a", "quantity": 1, "now": NOW})).rows
        assert after == left - 1


async def test_a_server_error_on_postgresql_carries_its_sqlstate(url: str) -> None:
    db = await _created(postgres_database("driver", url))
    try:
        with pytest.raises(DBAPIError) as raised:
            async with db.write() as session:
                await session.execute(text("SET LOCAL lock_timeout = 1"))
                await run(session, Query(select(text("1/0"))))
        assert sqlstate(raised.value) == "22012"  # division by zero
    finally:
        await db.dispose()
