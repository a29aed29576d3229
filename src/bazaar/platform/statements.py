"""Write statements every service's code runs inside its transactions: an insert that a
duplicate key leaves undone, and how many rows a statement matched."""

import functools
from typing import Any, cast

from sqlalchemy import CursorResult, FromClause, Result, TableClause
from sqlalchemy.dialects import postgresql, sqlite

from bazaar.platform.db import WriteSession


async def insert_ignoring_duplicates(
    session: WriteSession, table: FromClause, **values: Any
) -> bool:
    """Insert a row into `table` (a `Table`, or a model's `__table__`) unless its key exists;
    True when the row was inserted."""
    if not isinstance(table, TableClause):
        raise TypeError(f"{table!r} is not a table")
    statement = _ignoring_duplicates(table, session.get_bind().dialect.name)
    return bool(rows_matched(await session.execute(statement, values)))


@functools.cache
def _ignoring_duplicates(table: TableClause, dialect: str) -> Any:
    """The INSERT of `insert_ignoring_duplicates`, built once per table and dialect, its values
    bound at each execution: a statement built per row (`.values(...)`) costs SQLAlchemy a
    cache key computed over it each time."""
    return (
        (postgresql if dialect == "postgresql" else sqlite).insert(table).on_conflict_do_nothing()
    )


def rows_matched(result: Result[Any]) -> int:
    """How many rows an INSERT, UPDATE or DELETE without RETURNING matched.

    Such a statement's result is a `CursorResult`, which `execute` is not typed to return."""
    return cast(CursorResult[Any], result).rowcount
