"""The read/write split is checked, not only named: the type checker refuses a session that may
be a replica's where code writes, and `Database` hands out the session type it promises."""

from pathlib import Path

import pytest
from mypy import api

from bazaar.platform.db import ReadSession, WriteSession
from bazaar.platform.sqlite import sqlite_database

CALLERS = """\
from bazaar.platform.db import ReadSession, ReplicaSession, WriteSession


async def write(session: WriteSession) -> None: ...


async def read(session: ReadSession) -> None: ...


async def hand_over(reader: ReadSession, writer: WriteSession, replica: ReplicaSession) -> None:
    await read(reader)
    await read(writer)
    await read(replica)
    await write(writer)
    await write(reader)  # rejected
    await write(replica)  # rejected
"""


@pytest.fixture(scope="module")
def complaints(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> str:
    """What mypy --strict says of CALLERS, with no project configuration. Its cache is kept
    between runs where pytest keeps one: a cold run reads SQLAlchemy's types, some seconds."""
    folder = tmp_path_factory.mktemp("typing")
    source = folder / "callers.py"
    source.write_text(CALLERS)
    kept = getattr(pytestconfig, "cache", None)
    cache = kept.mkdir("mypy") if kept is not None else folder / "cache"
    options = ["--strict", "--config-file=", "--follow-imports=silent", "--cache-dir", str(cache)]
    out, err, _status = api.run([*options, str(source)])
    assert not err, err
    return out


def _lines_with(marker: str) -> set[int]:
    return {n for n, line in enumerate(CALLERS.splitlines(), 1) if line.endswith(marker)}


def _error_lines(complaints: str) -> set[int]:
    return {int(line.split(":")[1]) for line in complaints.splitlines() if ": error: " in line}


def test_a_read_session_is_refused_where_code_writes(complaints: str) -> None:
    assert _lines_with("# rejected") <= _error_lines(complaints), complaints
    for line in complaints.splitlines():
        if ": error: " in line:
            assert 'expected "WriteSession"' in line and line.endswith("[arg-type]"), line


def test_a_write_session_is_taken_where_code_only_reads(complaints: str) -> None:
    assert _error_lines(complaints) == _lines_with("# rejected"), complaints


async def test_the_database_hands_out_write_and_read_sessions(tmp_path: Path) -> None:
    db = sqlite_database("typing", tmp_path / "typing.sqlite3")
    try:
        async with db.write() as session:
            assert type(session) is WriteSession
        async with db.read() as session:
            assert type(session) is ReadSession  # not a WriteSession, though one is a ReadSession
    finally:
        await db.dispose()
