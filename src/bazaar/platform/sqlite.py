"""The embedded mode's databases: one SQLite file per service, in WAL mode, with a single
writer connection, a pool of readers and a reader of its own for single-statement reads."""

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bazaar.platform import sqlite_inline
from bazaar.platform.db import Database
from bazaar.platform.queries import SqliteReader

READERS = 8
"""Read connections per SQLite file and process: a pool that never grows past it, since an
opened connection costs more than a read (the pragmas, and with aiosqlite a thread)."""


def sqlite_engine(path: Path, *, writer: bool) -> AsyncEngine:
    """An engine on a SQLite file in WAL mode.

    The writer has a single connection that starts each transaction with BEGIN IMMEDIATE
    (platform/writer.py), so writers queue in the pool (an asyncio wait, bounded by its
    timeout) instead of failing with "database is locked" half-way through a transaction.
    Readers never block it. Both run their calls inline on the loop (see sqlite_inline): with
    the catalog's searches on an index, no read takes long enough to be worth a thread
    hand-off per call.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(
        f"sqlite+aiosqlite:///{path}",
        pool_size=1 if writer else READERS,
        max_overflow=0,
        pool_timeout=10,
        pool_reset_on_return=None if writer else "rollback",  # platform.writer ends its own
        async_creator=lambda: sqlite_inline.connect(str(path)),
    )

    @event.listens_for(engine.sync_engine, "connect")
    def configure(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy, not the driver, emits BEGIN
        cursor = dbapi_connection.cursor()
        pragmas = (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            "busy_timeout=10000",
            "foreign_keys=ON",
        )
        for pragma in pragmas:
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def begin(connection: Any) -> None:
        driver = connection.connection.driver_connection.sqlite
        if not driver.in_transaction:  # platform.writer's transaction began it on the driver
            driver.execute("BEGIN IMMEDIATE" if writer else "BEGIN")

    return engine


def sqlite_database(name: str, path: Path) -> Database:
    primary = sqlite_engine(path, writer=True)
    return Database(
        name=name,
        primary=primary,
        reader=sqlite_engine(path, writer=False),
        inline_reader=SqliteReader(path, primary.dialect),
    )
