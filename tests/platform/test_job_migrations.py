"""Upgrading to the job queue loses no work: the emails, webhook deliveries and imports that
were pending before the upgrade become jobs, and the finished ones do not (SQLite and
PostgreSQL, whose column drops differ)."""

from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from bazaar.catalog.wiring import SCHEMA as CATALOG
from bazaar.notifications.wiring import SCHEMA as NOTIFICATIONS
from bazaar.platform import migrations
from bazaar.platform.db import Database
from bazaar.platform.migrations import ServiceSchema
from bazaar.platform.postgres import drop_database, ensure_database, postgres_database
from bazaar.platform.schema import job
from bazaar.platform.sqlite import sqlite_database
from tests.postgres import fresh_database_url, require_server

BEFORE_JOBS = {
    "notifications": "notifications@d57927b6ebc7",
    "catalog": "catalog@08bbcaa708e7",
}
NOW = "'2026-11-29 12:00:00+00:00'"
ROWS = {
    "notifications": [
        "INSERT INTO outgoing_email (id, user_id, kind, reference, to_address, to_name, subject,"
        " body, status, attempts, next_attempt_at, created_at) VALUES"
        f" ('e-pending', 'u', 'k', 'r1', 'a@example.com', 'A', 's', 'b', 'pending', 2, {NOW},"
        f" {NOW}), ('e-sent', 'u', 'k', 'r2', 'a@example.com', 'A', 's', 'b', 'sent', 1, {NOW},"
        f" {NOW})",
        f"INSERT INTO webhook (id, url, events, secret, created_at) VALUES ('w', 'https://x.example',"
        f" '[]', 's', {NOW})",
        "INSERT INTO webhook_delivery (id, webhook_id, event_id, event_type, payload, status,"
        f" attempts, next_attempt_at, created_at) VALUES ('d-pending', 'w', 'ev', 't', :payload,"
        f" 'pending', 0, {NOW}, {NOW})",
    ],
    "catalog": [
        "INSERT INTO import_job (id, kind, status, processed_rows, created_count, updated_count,"
        " failed_count, errors, attempts, created_by, created_at, updated_at) VALUES"
        f" ('i-running', 'product_import', 'running', 0, 0, 0, 0, '[]', 1, 'a', {NOW}, {NOW}),"
        f" ('i-done', 'product_import', 'succeeded', 0, 0, 0, 0, '[]', 0, 'a', {NOW}, {NOW})",
    ],
}
EXPECTED = {
    "notifications": {
        ("email", b'{"email_id":"e-pending"}'),
        ("webhook", b'{"delivery_id":"d-pending"}'),
    },
    "catalog": {("product_import", b'{"import_id":"i-running"}')},
}


@pytest.fixture(params=["sqlite", "postgresql"])
async def server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path)
        return
    await require_server()
    url = make_url(fresh_database_url())
    await ensure_database(url)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        await drop_database(url)


@pytest.mark.parametrize("schema", [NOTIFICATIONS, CATALOG], ids=lambda s: s.branch)
async def test_pending_work_becomes_jobs(server: str, schema: ServiceSchema) -> None:
    db: Database = (
        postgres_database(schema.branch, server)
        if server.startswith("postgresql")
        else sqlite_database(schema.branch, Path(server) / "db.sqlite")
    )
    try:
        await migrations.upgrade(db, schema, to=BEFORE_JOBS[schema.branch])
        async with db.write() as session:
            for statement in ROWS[schema.branch]:
                payload = msgspec.json.encode({"id": "ev"})
                await session.execute(text(statement), {"payload": payload})
        await migrations.upgrade(db, schema)
        async with db.read() as session:
            rows = (await session.execute(select(job.c.kind, job.c.payload, job.c.status))).all()
    finally:
        await db.dispose()
    assert {(kind, payload) for kind, payload, _status in rows} == EXPECTED[schema.branch]
    assert {status for *_, status in rows} == {"queued"}
