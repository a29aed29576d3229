"""The SQL statements a test's code sends, on any engine: to count database round trips."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import event
from sqlalchemy.engine import Engine


@contextmanager
def statements_where(matches: Callable[[str], bool]) -> Iterator[list[str]]:
    """Every statement, while the block runs, for which `matches` is true."""
    seen: list[str] = []

    def record(_conn, _cursor, statement: str, _parameters, _context, _many) -> None:
        if matches(statement):
            seen.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", record)
