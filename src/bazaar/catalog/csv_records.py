"""The records of a CSV text, each with the line it starts on; an unreadable one is reported.

The csv module refuses a field longer than its limit (`csv.field_size_limit()`, 131,072
characters unless raised; the limit is kept, as no import column takes more than 10,000, so an
upload cannot make one giant field). After that error it goes on at the next physical line,
which may still be inside the bad record's quoted field, and would read the rest of that field
as records. So the bad record is skipped to its own end, found by the quoting rules the csv
module follows, and the records after it are read as they were written.
"""

import csv
import io
import re
from collections.abc import Iterator
from typing import NamedTuple

_QUOTED_FIELD_OR_END = re.compile(r',"|[\r\n]')
"""In an unquoted stretch, a quote means something only at a field's start (non-strict csv)."""
_QUOTES = re.compile(r'"+')


class Record(NamedTuple):
    """A record and the line it starts on (1-based); with `problem`, it could not be read and
    `fields` is empty."""

    line: int
    fields: list[str]
    problem: str | None = None


class _Lines:
    """The physical lines of a text (ended by `\\n`, `\\r\\n` or `\\r`), counted as they are
    taken, with the offset just past the last one taken."""

    def __init__(self, text: str) -> None:
        self._lines = iter(io.StringIO(text, newline=""))
        self.count = 0
        self.end = 0

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.count += 1
        self.end += len(line)
        return line

    def skip_to(self, offset: int) -> None:
        """Take lines until the one holding the character before `offset` is taken."""
        while self.end < offset and next(self, None) is not None:
            pass


def read_records(text: str) -> Iterator[Record]:
    """Every record of `text` (the header too), in order. Blank lines are records without
    fields; a record the csv module refuses is a `Record` with its `problem`."""
    lines = _Lines(text)
    reader = csv.reader(lines)
    line, start = 1, 0
    while True:
        try:
            for fields in reader:
                yield Record(line, fields)
                line, start = lines.count + 1, lines.end
            return
        except csv.Error as error:
            lines.skip_to(record_end(text, start))
            yield Record(line, [], _describe(error))
            line, start = lines.count + 1, lines.end


def record_end(text: str, start: int) -> int:
    """The offset just past the record that starts at `start`, as the csv module's default
    dialect delimits it: a line break ends it unless inside a field that starts with a quote,
    where `""` is a quote and a lone `"` closes the field."""
    position = start
    quoted = text.startswith('"', start)
    while True:
        if quoted:
            position = _past_closing_quote(text, position + 1)
        found = _QUOTED_FIELD_OR_END.search(text, position)
        if found is None:
            return len(text)
        if found.group() != ',"':
            return found.end()
        quoted, position = True, found.end() - 1


def _past_closing_quote(text: str, position: int) -> int:
    for run in _QUOTES.finditer(text, position):
        if len(run.group()) % 2 == 1:  # pairs are quotes in the field; the odd one closes it
            return run.end()
    return len(text)


def _describe(error: csv.Error) -> str:
    if "field limit" in str(error):
        return f"A field is longer than {csv.field_size_limit():,} characters"
    return f"The record cannot be read: {error}"
