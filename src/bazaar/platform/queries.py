"""Statements at the speed of the driver: a Core statement compiled once, run on the driver's
own connection without SQLAlchemy's execution machinery. Single-statement reads run here;
the statements of a write transaction run on its connection's driver (platform/statements.py).

A customer's most frequent reads (their order, their cart, their notifications) are one
SELECT each. Through an async engine such a statement costs ~0.35 ms of CPU here, most of it
checking a connection out of the pool and back (greenlets, a shielded task, the reset's
rollback) and building the result, against ~0.01 ms for the statement in `sqlite3` itself.
A `Query` is compiled once per dialect; on SQLite it runs on one connection of its own per
file and process, inline on the loop (as every SQLite call here, see `sqlite_inline`): a
statement runs to its end without yielding, so one connection serves them all, and in
autocommit each statement reads one consistent snapshot. Values come back through the same
result processors SQLAlchemy applies (a `Timestamp` is an aware datetime), so a row reads the
same whichever path served it. On PostgreSQL a `Query` runs on a pooled connection's asyncpg,
outside any transaction, where `Database.read` would read (platform/pg_reads.py); a list bound
to an IN is bound there as one array (`= ANY($1)`), so that each statement is prepared once,
whatever the list's length.

No library offers a compiled Core statement on a bare DB-API connection, hence this module.
"""

import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, NamedTuple, cast

from opentelemetry.trace import SpanKind
from sqlalchemy import Executable, all_, any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement, operators, visitors
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BinaryExpression, BindParameter
from sqlalchemy.types import TypeEngine

from bazaar.platform import tracing

Results = tuple[tuple[int, Callable[[Any], Any]], ...]
"""The result processors of a statement's columns that have one, with the columns' positions."""


class Compiled(NamedTuple):
    sql: str
    names: tuple[str, ...]
    """The bound parameters' names, in the order of the SQL's placeholders."""
    defaults: dict[str, Any]
    """The values bound in the statement itself (a literal `limit`, a constant)."""
    binds: Mapping[str, Callable[[Any], Any]]
    types: tuple[TypeEngine[Any], ...]
    """The result columns' types."""
    results: Results | None
    """Their result processors; None on PostgreSQL, where a numeric column's depends on the
    type the server says it returns (`described`)."""
    expanding: frozenset[str]
    """Parameters bound to a list (`bindparam("ids", expanding=True)` in an IN)."""


class Query:
    """A statement whose values are bound at each run by name (`bindparam("customer_id")`): a
    SELECT, or in a write transaction an INSERT, UPDATE or DELETE (platform/statements.py)."""

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._compiled: dict[str, Compiled] = {}

    def compiled(self, dialect: Dialect) -> Compiled:
        found = self._compiled.get(dialect.name)
        if found is None:
            found = self._compiled[dialect.name] = _compile(self.statement, dialect)
        return found


def _compile(statement: Executable, dialect: Dialect) -> Compiled:
    element = cast(ClauseElement, statement)
    if dialect.name == "postgresql":
        element = cast(ClauseElement, visitors.replacement_traverse(element, {}, _array_for_list))
    compiled = cast(SQLCompiler, element.compile(dialect=dialect))
    if compiled.positiontup is None:
        raise ValueError(f"{dialect.name} does not bind by position")
    if dialect.name == "postgresql" and "__[POSTCOMPILE_" in compiled.string:
        raise ValueError("on PostgreSQL a Query binds a list only to a column's IN or NOT IN")
    defaults = {
        name: bind.value
        for name, bind in compiled.binds.items()
        if bind.value is not None and not bind.required
    }
    binds = {
        name: process for name, process in compiled._bind_processors.items() if callable(process)
    }
    types = tuple(column.type for column in compiled._result_columns or ())
    results = (
        None if dialect.name == "postgresql" else _processors(types, dialect, [None] * len(types))
    )
    expanding = frozenset(name for name, bind in compiled.binds.items() if bind.expanding)
    names = tuple(compiled.positiontup)
    return Compiled(compiled.string, names, defaults, binds, types, results, expanding)


def described(compiled: Compiled, dialect: Dialect, coltypes: Sequence[object]) -> Results:
    """The result processors of `compiled`'s columns, given the type codes the driver describes
    them with (a DB-API cursor's `description`), as SQLAlchemy chooses them for a result."""
    return _processors(compiled.types, dialect, coltypes)


def _processors(
    types: Sequence[TypeEngine[Any]], dialect: Dialect, coltypes: Sequence[object]
) -> Results:
    processors = (
        type_._cached_result_processor(dialect, coltype)
        for type_, coltype in zip(types, coltypes, strict=True)
    )
    return tuple((i, process) for i, process in enumerate(processors) if process is not None)


def _array_for_list(element: ClauseElement, **_: Any) -> ClauseElement | None:
    """`column IN (:list)` as `column = ANY(:list)`, the list bound as one array (NOT IN as
    `<> ALL`): the same rows, an empty list included, from one statement for every length."""
    if not isinstance(element, BinaryExpression) or not isinstance(element.right, BindParameter):
        return None
    listed = element.right
    if not listed.expanding:
        return None
    array = bindparam(listed.key, type_=ARRAY(listed.type))
    if element.operator is operators.in_op:
        return element.left == any_(array)
    if element.operator is operators.not_in_op:
        return element.left != all_(array)
    return None


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


def processed(results: Results, rows: Iterable[Iterable[Any]]) -> list[tuple[Any, ...]]:
    """Rows through the result processors of their columns' types."""
    if not results:
        return [tuple(row) for row in rows]
    found = []
    for row in rows:
        values = list(row)
        for position, process in results:
            values[position] = process(values[position])
        found.append(tuple(values))
    return found


def traced(system: str, database: str, sql: str) -> AbstractContextManager[Any]:
    """The span of a statement run on the driver itself, named and described as the
    SQLAlchemy engine tracer describes a statement run through an engine; none when off."""
    active = tracing.active()
    if active is None:
        return nullcontext()
    tracer = active.provider.get_tracer("opentelemetry.instrumentation.sqlalchemy")
    return tracer.start_as_current_span(
        f"{sql.split(None, 1)[0]} {database}",
        kind=SpanKind.CLIENT,
        attributes={"db.system": system, "db.name": database, "db.statement": sql},
    )


class SqliteReader:
    """One read-only connection to a SQLite file, used inline (see the module's docstring)."""

    def __init__(self, path: Path, dialect: Dialect) -> None:
        self._path = path
        self._dialect = dialect
        self._connection: sqlite3.Connection | None = None

    def rows(self, query: Query, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        compiled = query.compiled(self._dialect)
        with traced("sqlite", self._path.stem, compiled.sql):
            return self._rows(compiled, params)

    def _rows(self, compiled: Compiled, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        assert compiled.results is not None  # known once compiled, on SQLite
        cursor = self._connect().execute(*bound(compiled, params))
        try:
            return processed(compiled.results, cursor.fetchall())
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
