"""The `bazaar` command line, run as a user runs it, on a fresh data directory."""

import asyncio
import os
import pty
import signal
import sys
import time
from pathlib import Path
from select import select as wait_for_input

import pytest
from sqlalchemy import func, select

from bazaar.catalog.models import Product
from bazaar.runtime.embedded import Runtime
from tests.plugin import FAST_ENV, settings_for
from tests.postgres import SERVER_URL
from tests.replication import free_port


def test_migrate_then_admin_create_is_refused_twice(cli) -> None:
    assert cli("migrate").exit_code == 0
    created = cli("admin", "create", "--email", "root@example.com", stdin="s3cret-pass\n")
    assert created.exit_code == 0, created.output
    again = cli("admin", "create", "--email", "ROOT@example.com", stdin="s3cret-pass\n")
    assert again.exit_code == 1
    assert "already exists" in again.output


def test_the_admin_password_read_from_stdin_logs_in(cli, tmp_path: Path) -> None:
    from bazaar.identity import service
    from bazaar.identity.wiring import passwords

    created = cli("admin", "create", "--email", "root@example.com", stdin="piped pass 1\n")
    assert created.exit_code == 0, created.output

    async def login(password: str) -> str:
        runtime = Runtime(settings_for(tmp_path / "data"))
        try:
            async with runtime.platform.databases["identity"].read() as session:
                hasher = passwords(runtime.settings.identity)
                user = await service.authenticate(session, hasher, "root@example.com", password)
                return user.role if user else None
        finally:
            await runtime.platform.close()

    assert asyncio.run(login("piped pass 1")) == "admin"
    assert asyncio.run(login("piped pass 1\n")) is None  # the line's end is no part of it


@pytest.mark.parametrize(
    ("stdin", "said"),
    [
        ("short\n", "8 to 128 characters"),
        ("", "No password on standard input"),
        ("x" * 129 + "\n", "8 to 128 characters"),
    ],
)
def test_a_missing_or_bad_admin_password_is_refused(cli, stdin: str, said: str) -> None:
    result = cli("admin", "create", "--email", "root@example.com", stdin=stdin)
    assert result.exit_code == 2
    assert said in result.output


def test_a_password_on_the_command_line_is_refused_saying_how_to_give_it(cli) -> None:
    result = cli("admin", "create", "--email", "a@example.com", "--password", "s3cret-pass")
    assert result.exit_code == 2
    assert "no longer taken" in result.output and "standard input" in result.output
    assert "--password" not in cli("admin", "create", "--help").output


def test_at_a_terminal_the_password_is_asked_twice_and_never_shown(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BAZAAR_")},
        **FAST_ENV,
        "BAZAAR_DATA_DIR": str(tmp_path / "data"),
        "BAZAAR_ENV_FILE": "",
    }
    bazaar = str(Path(sys.executable).parent / "bazaar")
    pid, terminal = pty.fork()
    if pid == 0:  # the child: becomes `bazaar`, on the terminal
        try:
            os.execve(bazaar, [bazaar, "admin", "create", "--email", "tty@example.com"], env)
        finally:
            os._exit(127)
    seen = b""

    def until(text: bytes) -> None:
        nonlocal seen
        deadline = time.monotonic() + 60
        while text not in seen and time.monotonic() < deadline:
            if wait_for_input([terminal], [], [], 0.2)[0]:
                try:
                    seen += os.read(terminal, 1024)
                except OSError:  # the child closed the terminal
                    return

    until(b"Password: ")  # the space comes once echo is off
    os.write(terminal, b"typed secret 1\n")
    until(b"confirmation: ")
    os.write(terminal, b"typed secret 1\n")
    until(b"created")
    if b"created" not in seen:  # stuck: the assertion below says where
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    os.close(terminal)
    assert os.waitstatus_to_exitcode(status) == 0, seen
    assert b"Admin tty@example.com created" in seen
    assert b"typed secret" not in seen


@pytest.mark.parametrize(
    ("arguments", "choices"),
    [
        (("scale", "books", "2"), "'identity', 'catalog', 'orders', 'payments', 'notifications'"),
        (("restart", "books"), "'identity', 'catalog', 'orders', 'payments', 'notifications'"),
        (("bench", "--mode", "fast"), "'embedded', 'scaled', 'both', 'tracing'"),
        (("makemigration", "books", "-m", "x"), "'identity', 'catalog', 'orders'"),
    ],
)
def test_a_choice_outside_the_fixed_set_is_refused_listing_the_set(
    cli, arguments: tuple[str, ...], choices: str
) -> None:
    result = cli(*arguments)
    assert result.exit_code == 2
    assert choices in " ".join(result.output.replace("│", " ").split())


def test_the_services_to_choose_are_those_bazaar_runs() -> None:
    from bazaar.cli.processes import Service
    from bazaar.runtime.services import SERVICES

    assert [service.value for service in Service] == list(SERVICES)


def test_version_prints_the_installed_package_version(cli) -> None:
    from importlib.metadata import version

    result = cli("--version")
    assert result.exit_code == 0
    assert result.output.strip() == f"bazaar {version('bazaar')}"


def test_seed_fills_the_catalog(cli, tmp_path: Path) -> None:
    result = cli("seed", "--products", "250")
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


def test_a_bad_setting_stops_the_command_naming_the_variable(cli) -> None:
    result = cli("migrate", BAZAAR_ORDER_SHARDS="zero")
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
    cli, variable: str, extra: dict[str, str]
) -> None:
    dead, live = f"postgresql://postgres@127.0.0.1:{free_port()}", SERVER_URL.rstrip("/")
    urls = {name: url.format(dead=dead, live=live) for name, url in extra.items()}
    primary = f"{dead}/bazaar" if variable == "BAZAAR_DATABASE_URL" else f"{live}/bazaar_never"
    result = cli("migrate", BAZAAR_DATABASE_URL=primary, **urls)
    assert result.exit_code == 2, result.output
    assert f"{variable}: 127.0.0.1:" in result.output
    assert "does not answer" in result.output


def test_dlq_lists_and_replays_the_dead_letter_tables(cli, tmp_path: Path) -> None:
    from bazaar.platform.clock import utcnow
    from bazaar.platform.schema import dead_letter

    assert cli("migrate").exit_code == 0

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
    listed = cli("dlq", "list")
    assert listed.exit_code == 0, listed.output
    assert "event-1" in listed.output and "cannot digest this" in listed.output
    assert cli("dlq", "replay", "--id", "other").output.count("event-1") == 0
    replayed = cli("dlq", "replay", "--id", "event-1")
    assert replayed.exit_code == 0 and "1 message(s) replayed" in replayed.output
    assert "event-1" not in cli("dlq", "list").output


def test_dlq_lists_and_replays_dead_jobs(cli, tmp_path: Path) -> None:
    from sqlalchemy import select

    from bazaar.platform import jobs
    from bazaar.platform.schema import job

    assert cli("migrate").exit_code == 0
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
    listed = cli("dlq", "list", "--consumer", "job:product_import")
    assert listed.exit_code == 0, listed.output
    assert job_id in listed.output and "GiveUp: no file" in listed.output
    assert job_id not in cli("dlq", "list", "--consumer", "nobody.listens").output
    replayed = cli("dlq", "replay", "--id", job_id)
    assert replayed.exit_code == 0 and "1 message(s) replayed" in replayed.output
    assert asyncio.run(with_catalog(status_of)) == "queued"
    assert job_id not in cli("dlq", "list").output
