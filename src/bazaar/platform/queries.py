"""Single-statement reads at the speed of the driver: a Core SELECT compiled once, run on
SQLite's own connection without SQLAlchemy's execution machinery.

A customer's most frequent reads (their order, their cart, their notifications) are one
SELECT each. Through an async engine such a statement costs ~0.35 ms of CPU here, most of it
checking a connection out of the pool and back (greenlets, a shielded task, the reset's
rollback) and building the result, against ~0.01 ms for the statement in `sqlite3` itself.
A `Query` is compiled once per dialect; on SQLite it runs on one connection of its own per
file and process, inline on the loop (as every SQLite call here, see `sqlite_inline`): a
statement runs to its end without yielding, so one connection serves them all, and in
autocommit each statement reads one consistent snapshot. Values come back through the same
result processors SQLAlchemy applies (a `Timestamp` is an aware datetime), so a row reads the
same whichever path served it. On PostgreSQL a `Query` runs in `Database.read`'s session, which
chooses a replica or the primary (`Database.rows`).

No library offers a compiled Core statement on a bare DB-API connection, hence this module.
"""

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from opentelemetry.trace import SpanKind
from sqlalchemy import Select
from sqlalchemy.engine import Dialect

from bazaar.platform import tracing

Processor = Callable[[Any], Any] | None


class Compiled(NamedTuple):
    sql: str
    names: tuple[str, ...]
    """The bound parameters' names, in the order of the SQL's placeholders."""
    defaults: dict[str, Any]
    """The values bound in the statement itself (a literal `limit`, a constant)."""
    binds: Mapping[str, Callable[[Any], Any]]
    results: tuple[Processor, ...]
    expanding: frozenset[str]
    """Parameters bound to a list (`bindparam("ids", expanding=True)` in an IN)."""


class Query:
    """A SELECT whose values are bound at each run by name (`bindparam("customer_id")`)."""

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement
        self._compiled: dict[str, Compiled] = {}

    def compiled(self, dialect: Dialect) -> Compiled:
        found = self._compiled.get(dialect.name)
        if found is None:
            found = self._compiled[dialect.name] = _compile(self.statement, dialect)
        return found


def _compile(statement: Select[Any], dialect: Dialect) -> Compiled:
    compiled = statement.compile(dialect=dialect)
    if compiled.positiontup is None:
        raise ValueError(f"{dialect.name} does not bind by position")
    defaults = {
        name: bind.value
        for name, bind in compiled.binds.items()
        if bind.value is not None and not bind.required
    }
    binds = {
        name: process for name, process in compiled._bind_processors.items() if callable(process)
    }
    results = tuple(
        column.type._cached_result_processor(dialect, None) for column in compiled._result_columns
    )
    expanding = frozenset(name for name, bind in compiled.binds.items() if bind.expanding)
    names = tuple(compiled.positiontup)
    return Compiled(compiled.string, names, defaults, binds, results, expanding)


def bound(compiled: Compiled, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """The statement's SQL and its parameters, in order, through their types' bind
    processors; a list bound to an IN becomes a placeholder per item (none is `IN ()`,
    which SQLite reads as false)."""
    sql = compiled.sql
    values: list[Any] = []
    for name in compiled.names:
        value = params[name] if name in params else compiled.defaults[name]
        process = compiled.binds.get(name)
        if name in compiled.expanding:
            items = list(value)
            token = f"__[POSTCOMPILE_{name}]"
            sql = sql.replace(token, ", ".join("?" * len(items)), 1)
            values.extend(items if process is None else map(process, items))
        else:
            values.append(value if process is None or value is None else process(value))
    return sql, values


def processed(compiled: Compiled, rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
    """Rows through the result processors of their columns' types."""
    results = compiled.results
    if not any(results):
        return [tuple(row) for row in rows]
    return [
        tuple(value if p is None else p(value) for p, value in zip(results, row, strict=True))
        for row in rows
    ]


class SqliteReader:
    """One read-only connection to a SQLite file, used inline (see the module's docstring)."""

    def __init__(self, path: Path, dialect: Dialect) -> None:
        self._path = path
        self._dialect = dialect
        self._connection: sqlite3.Connection | None = None

    def rows(self, query: Query, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        compiled = query.compiled(self._dialect)
        traced = tracing.active()
        if traced is None:
            return self._rows(compiled, params)
        tracer = traced.provider.get_tracer("opentelemetry.instrumentation.sqlalchemy")
        with tracer.start_as_current_span(
            f"SELECT {self._path.stem}",
            kind=SpanKind.CLIENT,
            attributes={
                "db.system": "sqlite",
                "db.name": self._path.stem,
                "db.statement": compiled.sql,
            },
        ):
            return self._rows(compiled, params)

    def _rows(self, compiled: Compiled, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        cursor = self._connect().execute(*bound(compiled, params))
        try:
            return processed(compiled, cursor.fetchall())
        finally:
            cursor.close()

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = sqlite3.connect(
                str(self._path), isolation_level=None, check_same_thread=False
            )
            for pragma in ("query_only=ON", "busy_timeout=10000"):
                connection.execute(f"PRAGMA {pragma}")
            self._connection = connection
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
