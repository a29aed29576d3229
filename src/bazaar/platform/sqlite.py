"""The embedded mode's databases: one SQLite file per service, in WAL mode, with a single
writer connection, a pool of readers and a reader of its own for single-statement reads."""

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.util import greenlet_spawn

from bazaar.platform import sqlite_inline, statements
from bazaar.platform.db import Database, WriteSession
from bazaar.platform.queries import SqliteReader

READERS = 8
"""Read connections per SQLite file and process: a pool that never grows past it, since an
opened connection costs more than a read (the pragmas, and with aiosqlite a thread)."""


def sqlite_engine(path: Path, *, writer: bool) -> AsyncEngine:
    """An engine on a SQLite file in WAL mode.

    The writer has a single connection that starts each transaction with BEGIN IMMEDIATE, so
    writers queue in the pool (an asyncio wait, bounded by its timeout) instead of failing
    with "database is locked" half-way through a transaction. Readers never block it. Both
    run their calls inline on the loop (see sqlite_inline): with the catalog's searches on an
    index, no read takes long enough to be worth a thread hand-off per call.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(
        f"sqlite+aiosqlite:///{path}",
        pool_size=1 if writer else READERS,
        max_overflow=0,
        pool_timeout=10,
        pool_reset_on_return=None if writer else "rollback",  # SqliteWriter ends its own
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
        if not driver.in_transaction:  # a SqliteWriter's transaction began it on the driver
            driver.execute("BEGIN IMMEDIATE" if writer else "BEGIN")

    return engine


class SqliteWriter:
    """Write transactions on a file's one writer connection, begun and ended on the driver.

    Through SQLAlchemy's session a transaction cost ~0.45 ms of CPU before its first
    statement had run (the session's begin, a pool checkout in a greenlet, BEGIN through the
    engine's execution machinery, and as much again to commit and close), against ~0.08 ms for
    a checkout, BEGIN IMMEDIATE and COMMIT on the driver. So the transaction begins on the
    driver, statements run there (platform/statements.py), and the session handed to the use
    case is bound to the same connection: the ORM, when a use case uses it, joins the
    transaction (the engine's `begin` sees it begun) and its commit ends it.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[WriteSession]:
        """A transaction, committed when the block ends without an error."""
        engine = self._engine.sync_engine
        pooled = await greenlet_spawn(engine.pool.connect)  # one writer: waits its turn
        joined = Connection(engine, connection=pooled)
        connection = AsyncConnection(self._engine, joined)
        try:
            driver: sqlite3.Connection = pooled.driver_connection.sqlite  # type: ignore[union-attr]
            driver.execute("BEGIN IMMEDIATE")
            session = WriteSession(bind=connection, expire_on_commit=False)
            session.info[statements.DRIVER] = statements.Driver(engine.dialect, driver)
            try:
                yield session
                if _took_part(session):
                    await session.commit()  # the ORM's flush, then the commit of them all
                driver.commit()  # when the ORM took no part
            except BaseException:
                if session.in_transaction():
                    await session.rollback()
                driver.rollback()
                raise
            finally:
                if _took_part(session) or session.identity_map:
                    await session.close()
        finally:
            joined.close()  # given back as it is: nothing to reset


def _took_part(session: WriteSession) -> bool:
    """Whether the ORM has work of its own in `session`'s transaction."""
    return session.in_transaction() or bool(session.new or session.dirty or session.deleted)


def sqlite_database(name: str, path: Path) -> Database:
    primary = sqlite_engine(path, writer=True)
    return Database(
        name=name,
        primary=primary,
        reader=sqlite_engine(path, writer=False),
        inline_reader=SqliteReader(path, primary.dialect),
        writer=SqliteWriter(primary),
    )
