"""Write statements every service's code runs inside its transactions, at the speed of the
driver: an insert that a duplicate key leaves undone, an insert of rows, and any `Query` run on
the transaction's own connection.

Through the session a statement costs SQLAlchemy's execution machinery: a product's insert
about 0.35 ms of CPU on SQLite, where `sqlite3` runs it in 0.03 ms (a product created with its
category and its event: 2.1 ms through the session, 0.3 ms in `sqlite3` alone; measured apart,
docs/performance.md). `run` executes a `Query` (compiled once per dialect, platform/queries.py)
on the driver connection of the transaction `Database.write` began (platform/writer.py):
`sqlite3` inline on SQLite, asyncpg on PostgreSQL (through its statement cache, so each
statement is prepared once per connection); the ORM's statements of the same transaction run
on the same connection. Values go through the
same bind and result processors SQLAlchemy applies. A driver's integrity error is raised as
SQLAlchemy's `IntegrityError` and any other error of the server as its `DBAPIError` (the
driver's error as `orig`), so a use case catches one kind whichever path ran its statement.
"""

import functools
import sqlite3
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import asyncpg
from sqlalchemy import CursorResult, FromClause, Result, TableClause, bindparam, insert
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from bazaar.platform.pg_reads import rows_on
from bazaar.platform.queries import Compiled, Query, Results, bound, processed, traced

if TYPE_CHECKING:
    from bazaar.platform.db import WriteSession

Rows = list[tuple[Any, ...]]
DRIVER = "driver"
"""The keys of a write session's `info` (set by platform/writer.py): its transaction's driver
connection, the database's name (traces) and the counter of its statements."""
DATABASE = "database"
COUNT = "count_statement"


class Ran(NamedTuple):
    """What a statement returned (its RETURNING or SELECT rows) and how many rows it matched."""

    rows: Rows
    matched: int


class Driver(NamedTuple):
    """A transaction's connection at the driver, kept in its session's `info` under DRIVER."""

    dialect: Dialect
    connection: Any
    """`sqlite3.Connection` or `asyncpg.Connection`."""


async def run(
    session: "WriteSession", query: Query, params: Mapping[str, Any] | None = None
) -> Ran:
    """Run `query` with `params` in `session`'s transaction, on its connection's driver."""
    driver, compiled = _prepared(session, query)
    sql, values = bound(compiled, params or {})
    with traced(driver.dialect.name, session.info[DATABASE], sql):
        if driver.dialect.name == "sqlite":
            return _run_sqlite(driver.connection, sql, values, compiled.results)
        return await _run_postgresql(driver, query, compiled, sql, values)


async def run_many(
    session: "WriteSession", query: Query, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Run `query` once for each of `rows` (an INSERT of several rows), in one exchange."""
    if len(rows) == 1:
        await run(session, query, rows[0])
        return
    driver, compiled = _prepared(session, query)
    sql = compiled.sql
    values = [bound(compiled, row)[1] for row in rows]
    with traced(driver.dialect.name, session.info[DATABASE], sql):
        try:
            if driver.dialect.name == "sqlite":
                driver.connection.executemany(sql, values)
            else:
                await driver.connection.executemany(sql, values)
        except (sqlite3.DatabaseError, asyncpg.PostgresError) as error:
            raise _translated(error, sql, values) from error


async def insert_ignoring_duplicates(
    session: "WriteSession", table: FromClause, **values: Any
) -> bool:
    """Insert a row into `table` (a `Table`, or a model's `__table__`) unless its key exists;
    True when the row was inserted."""
    if not isinstance(table, TableClause):
        raise TypeError(f"{table!r} is not a table")
    statement = _ignoring_duplicates(table, tuple(values))
    return (await run(session, statement, values)).matched == 1


@functools.cache
def _ignoring_duplicates(table: TableClause, columns: tuple[str, ...]) -> Query:
    """The INSERT of `insert_ignoring_duplicates` for these columns, built once."""
    values: dict[str, Any] = {column: bindparam(column) for column in columns}
    # PostgreSQL's ON CONFLICT DO NOTHING, which SQLite's compiler writes the same way
    return Query(postgresql.insert(table).values(values).on_conflict_do_nothing())


@functools.cache
def inserting(table: TableClause, columns: tuple[str, ...]) -> Query:
    """An INSERT of `columns` into `table`, their values bound by name at each run."""
    values: dict[str, Any] = {column: bindparam(column) for column in columns}
    return Query(insert(table).values(values))


async def insert_instances(session: "WriteSession", instances: Sequence[Any]) -> None:
    """Insert new ORM instances of one model as rows, on the driver: written as they are, not
    added to the session (its unit of work costs more than the rows). Every column is written,
    an attribute left unset as NULL."""
    if not instances:
        return
    table = cast(TableClause, type(instances[0]).__table__)
    keys = tuple(column.key for column in table.columns)
    rows = [{key: getattr(instance, key) for key in keys} for instance in instances]
    await run_many(session, inserting(table, keys), rows)


def rows_matched(result: Result[Any]) -> int:
    """How many rows an INSERT, UPDATE or DELETE without RETURNING matched.

    Such a statement's result is a `CursorResult`, which `execute` is not typed to return."""
    return cast(CursorResult[Any], result).rowcount


def _prepared(session: "WriteSession", query: Query) -> tuple[Driver, Compiled]:
    """The driver connection of `session`'s transaction (platform/writer.py) and `query`
    compiled for it; the statement about to run is counted as one of the database's."""
    driver: Driver = session.info[DRIVER]
    session.info[COUNT]()
    return driver, query.compiled(driver.dialect)


def _run_sqlite(
    connection: sqlite3.Connection, sql: str, values: list[Any], results: Results | None
) -> Ran:
    try:
        cursor = connection.execute(sql, values)
    except sqlite3.DatabaseError as error:
        raise _translated(error, sql, values) from error
    try:
        rows = processed(results or (), cursor.fetchall()) if cursor.description else []
        return Ran(rows, cursor.rowcount if cursor.rowcount >= 0 else len(rows))
    finally:
        cursor.close()


async def _run_postgresql(
    driver: Driver, query: Query, compiled: Compiled, sql: str, values: list[Any]
) -> Ran:
    connection: asyncpg.Connection = driver.connection
    try:
        if not compiled.types:  # no rows to return: the status says how many it matched
            return Ran([], _matched(await connection.execute(sql, *values)))
        rows = await rows_on(connection, query, driver.dialect, sql, values)
    except asyncpg.PostgresError as error:
        raise _translated(error, sql, values) from error
    return Ran(rows, len(rows))


def _translated(error: Exception, sql: str, values: Any) -> DBAPIError:
    """The driver's `error` as SQLAlchemy raises it from a session's statement."""
    if isinstance(error, sqlite3.IntegrityError | asyncpg.IntegrityConstraintViolationError):
        return IntegrityError(sql, values, error)
    if isinstance(error, sqlite3.OperationalError):
        return OperationalError(sql, values, error)
    return DBAPIError(sql, values, error)


def _matched(status: str) -> int:
    """The row count of a command's status (`INSERT 0 1`, `UPDATE 3`, `DELETE 0`)."""
    count = status.rsplit(" ", 1)[-1]
    return int(count) if count.isdigit() else 0
