"""The `bazaar` command line, run as a user runs it, on a fresh data directory."""

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from bazaar.catalog.models import Product
from bazaar.cli import app
from bazaar.runtime.embedded import Runtime
from tests.plugin import FAST_ENV, settings_for
from tests.postgres import SERVER_URL
from tests.replication import free_port


@pytest.fixture
def run(tmp_path: Path):
    runner = CliRunner()
    env = {**FAST_ENV, "BAZAAR_DATA_DIR": str(tmp_path / "data")}

    def invoke(*args: str, **extra: str):
        return runner.invoke(app, list(args), env={**env, **extra})

    return invoke


def test_migrate_then_admin_create_is_refused_twice(run) -> None:
    assert run("migrate").exit_code == 0
    created = run("admin", "create", "--email", "root@example.com", "--password", "s3cret-pass")
    assert created.exit_code == 0, created.output
    again = run("admin", "create", "--email", "ROOT@example.com", "--password", "s3cret-pass")
    assert again.exit_code == 1
    assert "already exists" in again.output


def test_a_short_admin_password_is_refused(run) -> None:
    result = run("admin", "create", "--email", "root@example.com", "--password", "short")
    assert result.exit_code == 2


def test_seed_fills_the_catalog(run, tmp_path: Path) -> None:
    result = run("seed", "--products", "250")
    assert result.exit_code == 0, result.output
    assert "250 products seeded" in result.output

    async def count() -> int:
        runtime = Runtime(settings_for(tmp_path / "data"))
        try:
            async with runtime.platform.databases["catalog"].read() as session:
                return await session.scalar(select(func.count()).select_from(Product))
        finally:
            await runtime.platform.close()

    assert asyncio.run(count()) == 250


def test_a_bad_setting_stops_the_command_naming_the_variable(run) -> None:
    result = run("migrate", BAZAAR_ORDER_SHARDS="zero")
    assert result.exit_code == 2
    assert "BAZAAR_ORDER_SHARDS" in result.output


@pytest.mark.parametrize(
    ("variable", "extra"),
    [
        ("BAZAAR_DATABASE_URL", {}),
        ("BAZAAR_ORDER_SHARD_URLS", {"BAZAAR_ORDER_SHARD_URLS": "{dead}/a,{live}/b"}),
        ("BAZAAR_REPLICA_URLS", {"BAZAAR_REPLICA_URLS": "{dead}/bazaar"}),
    ],
)
def test_a_server_that_does_not_answer_is_named_by_its_variable(
    run, variable: str, extra: dict[str, str]
) -> None:
    dead, live = f"postgresql://postgres@127.0.0.1:{free_port()}", SERVER_URL.rstrip("/")
    urls = {name: url.format(dead=dead, live=live) for name, url in extra.items()}
    primary = f"{dead}/bazaar" if variable == "BAZAAR_DATABASE_URL" else f"{live}/bazaar_never"
    result = run("migrate", BAZAAR_DATABASE_URL=primary, **urls)
    assert result.exit_code == 2, result.output
    assert f"{variable}: 127.0.0.1:" in result.output
    assert "does not answer" in result.output


def test_dlq_lists_and_replays_the_dead_letter_tables(run, tmp_path: Path) -> None:
    from bazaar.platform.clock import utcnow
    from bazaar.platform.schema import dead_letter

    assert run("migrate").exit_code == 0

    async def dead_letter_one() -> None:
        runtime = Runtime(settings_for(tmp_path / "data"))
        try:
            async with runtime.platform.databases["notifications"].write() as session:
                await session.execute(
                    dead_letter.insert().values(
                        id="dl-1",
                        consumer="nobody.listens",
                        event_id="event-1",
                        type="thing.happened",
                        envelope=b"{}",
                        error="ValueError: cannot digest this",
                        attempts=5,
                        failed_at=utcnow(),
                    )
                )
        finally:
            await runtime.platform.close()

    asyncio.run(dead_letter_one())
    listed = run("dlq", "list")
    assert listed.exit_code == 0, listed.output
    assert "event-1" in listed.output and "cannot digest this" in listed.output
    assert run("dlq", "replay", "--id", "other").output.count("event-1") == 0
    replayed = run("dlq", "replay", "--id", "event-1")
    assert replayed.exit_code == 0 and "1 message(s) replayed" in replayed.output
    assert "event-1" not in run("dlq", "list").output


def test_dlq_lists_and_replays_dead_jobs(run, tmp_path: Path) -> None:
    from sqlalchemy import select

    from bazaar.platform import jobs
    from bazaar.platform.schema import job

    assert run("migrate").exit_code == 0
    catalog = "catalog"

    async def with_catalog(work):
        runtime = Runtime(settings_for(tmp_path / "data"))
        try:
            return await work(runtime.platform.databases[catalog])
        finally:
            await runtime.platform.close()

    async def kill_one(db):
        async with db.write() as session:
            job_id = jobs.enqueue(session, "product_import", {"import_id": "gone"})
        async with db.write() as session:
            await session.execute(
                job.update().values(status=jobs.JobStatus.DEAD, last_error="GiveUp: no file")
            )
        return job_id

    async def status_of(db):
        async with db.read() as session:
            return await session.scalar(select(job.c.status))

    job_id = asyncio.run(with_catalog(kill_one))
    listed = run("dlq", "list", "--consumer", "job:product_import")
    assert listed.exit_code == 0, listed.output
    assert job_id in listed.output and "GiveUp: no file" in listed.output
    assert job_id not in run("dlq", "list", "--consumer", "nobody.listens").output
    replayed = run("dlq", "replay", "--id", job_id)
    assert replayed.exit_code == 0 and "1 message(s) replayed" in replayed.output
    assert asyncio.run(with_catalog(status_of)) == "queued"
    assert job_id not in run("dlq", "list").output
