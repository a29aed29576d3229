"""Data: administrator accounts, a generated catalog, dead-lettered messages."""

import asyncio
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from bazaar.cli import admin, app, console, dlq, progress_bar, target_or_exit

if TYPE_CHECKING:
    from bazaar.platform.db import Database

PIPED = "echo PASSWORD | bazaar admin create --email E"


@admin.command("create")
def admin_create(
    email: Annotated[str, typer.Option(help="The admin's email.")],
    name: Annotated[str, typer.Option(help="Display name.")] = "Administrator",
    on_command_line: Annotated[str | None, typer.Option("--password", hidden=True)] = None,
) -> None:
    """Create an admin account (migrating first if needed). The password (8 to 128
    characters) is asked at a terminal, else read from the first line of standard input.

    Its `user.registered` event stays in identity's outbox until a running Bazaar's relay
    publishes it (at once, or at that process's next start).
    """
    from bazaar.identity import service
    from bazaar.identity.wiring import passwords
    from bazaar.platform.auth import ADMIN
    from bazaar.platform.errors import BazaarError
    from bazaar.runtime.embedded import Runtime

    if on_command_line is not None:  # `ps` and the shell's history would keep it
        console.print(
            "[red]--password is no longer taken[/red] (`ps` and the shell's history keep a"
            f" command line): the password is asked, or read from standard input ({PIPED})."
        )
        raise typer.Exit(2)
    settings = target_or_exit().settings
    password = _password()
    if not 8 <= len(password) <= 128:
        console.print("[red]The password must be 8 to 128 characters.[/red]")
        raise typer.Exit(2)

    async def run() -> str:
        runtime = Runtime(settings)
        try:
            await runtime.migrate()
            async with runtime.platform.databases["identity"].write() as session:
                user = await service.register_user(
                    session,
                    passwords(runtime.settings.identity),
                    email=email,
                    password=password,
                    name=name,
                    role=ADMIN,
                )
            return user.id
        finally:
            await runtime.platform.close()

    try:
        user_id = asyncio.run(run())
    except BazaarError as error:
        console.print(f"[red]{error.detail}[/red]")
        raise typer.Exit(1) from None
    console.print(f"[green]Admin {email} created[/green] (id {user_id})")


def _interactive() -> bool:
    """Whether a person types at standard input."""
    return sys.stdin.isatty()


def _password() -> str:
    """Asked twice, not echoed, at a terminal; else the first line of standard input."""
    if _interactive():
        return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))
    line = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if not line:
        console.print(f"[red]No password on standard input[/red] ({PIPED}).")
        raise typer.Exit(2)
    return line


@app.command()
def seed(
    products: Annotated[int, typer.Option(min=1, help="How many products to generate.")],
) -> None:
    """Fill the catalog with generated products (migrating first if needed)."""
    import time

    from bazaar.catalog.seed import seed_products
    from bazaar.runtime.embedded import Runtime

    settings = target_or_exit().settings

    async def run() -> int:
        runtime = Runtime(settings)
        try:
            await runtime.migrate()
            with progress_bar() as progress:
                task = progress.add_task("Seeding products", total=products)
                return await seed_products(
                    runtime.platform.databases["catalog"],
                    products,
                    on_progress=lambda done: progress.advance(task, done),
                )
        finally:
            await runtime.platform.close()

    started = time.perf_counter()
    count = asyncio.run(run())
    elapsed = time.perf_counter() - started
    console.print(f"[green]{count} products seeded[/green] in {elapsed:.1f} s")


Letter = tuple[str, str, str, str, datetime | None]
"""A dead letter as listed: consumer, event id, type, why, when."""


def _dead_letters(replay: bool, consumer: str | None, event_id: str | None) -> list[Letter]:
    """(consumer, event id, type, why, when) of the dead letters, replayed first if asked:
    the bus's, wherever it keeps them (the broker's dead-letter queues with BAZAAR_BROKER_URL,
    else the dead_letter tables), and the dead jobs of every database (`job:<kind>`)."""
    from bazaar.platform import jobs
    from bazaar.runtime.embedded import Runtime

    # `job:<kind>` names dead jobs only; another consumer, the bus's letters only
    kind = consumer.removeprefix(jobs.DEAD_LETTER_PREFIX) if consumer else None
    of_jobs = consumer is None or kind != consumer
    of_bus = consumer is None or kind == consumer

    settings = target_or_exit().settings

    async def run() -> list[Letter]:
        runtime = Runtime(settings)
        try:
            if runtime.platform.settings.embedded:  # the SQLite files may be new
                await runtime.migrate()
            listed: list[Letter] = []
            if of_bus:
                consumers = None if consumer is None else [consumer]
                bus = runtime.platform.bus
                if replay:
                    letters = await bus.replay_dead_letters(consumers, event_id)
                else:
                    letters = await bus.dead_letters(consumers)
                listed += [(d.consumer, d.event_id, d.type, d.reason, d.failed_at) for d in letters]
            if of_jobs:
                kinds = None if kind is None else [kind]
                for db in runtime.platform.all_databases():
                    listed += await _dead_jobs(db, kinds, event_id, replay=replay)
            return [letter for letter in listed if event_id in (None, letter[1])]
        finally:
            await runtime.platform.close()

    return asyncio.run(run())


async def _dead_jobs(
    db: "Database", kinds: list[str] | None, job_id: str | None, *, replay: bool
) -> list[Letter]:
    from bazaar.platform import jobs

    async with db.read(fresh=True) as session:
        dead = [job for job in await jobs.dead_jobs(session, kinds) if job_id in (None, job.id)]
    if replay and dead:
        async with db.write() as session:
            for job in dead:
                await jobs.replay_dead(session, job_id=job.id)
    return [
        (
            f"{jobs.DEAD_LETTER_PREFIX}{job.kind}",
            job.id,
            job.kind,
            (job.last_error or "").rpartition("\n")[2],
            job.failed_at,
        )
        for job in dead
    ]


@dlq.command("list")
def dlq_list(
    consumer: Annotated[
        str | None, typer.Option(help="Only this consumer's (`job:<kind>`: dead jobs).")
    ] = None,
) -> None:
    """List the messages and jobs that failed too often (consumer, id, type, why, when)."""
    letters = _dead_letters(False, consumer, None)
    for letter in letters:
        typer.echo("\t".join(str(field) for field in letter))
    console.print(f"{len(letters)} dead-lettered message(s)")


@dlq.command("replay")
def dlq_replay(
    consumer: Annotated[str | None, typer.Option(help="Only this consumer's.")] = None,
    event_id: Annotated[str | None, typer.Option("--id", help="Only this event id.")] = None,
) -> None:
    """Deliver dead-lettered messages again to their consumer and mark them replayed."""
    letters = _dead_letters(True, consumer, event_id)
    for letter in letters:
        typer.echo("\t".join(str(field) for field in letter))
    console.print(f"[green]{len(letters)} message(s) replayed[/green]")
