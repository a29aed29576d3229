"""The `bazaar` command line."""

import asyncio
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from bazaar.platform.settings import SettingsError

app = typer.Typer(help="Bazaar: a horizontally scalable e-commerce backend.", no_args_is_help=True)
admin = typer.Typer(help="Administrator accounts.", no_args_is_help=True)
app.add_typer(admin, name="admin")
dlq = typer.Typer(help="Dead-lettered messages: list and replay.", no_args_is_help=True)
app.add_typer(dlq, name="dlq")
console = Console(stderr=True)
STOP_SECONDS = 20
"""How long granian lets a process stop cleanly before killing it."""


def _settings():
    from bazaar.runtime.config import Settings

    try:
        return Settings.from_env()
    except SettingsError as error:
        console.print(f"[red]Bad setting[/red] {error}")
        raise typer.Exit(2) from None


@app.command()
def dev(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
) -> None:
    """Every service in one process, on the embedded default: no server to install."""
    from granian.constants import Interfaces
    from granian.server import Server

    settings = _settings()
    console.print(
        f"Bazaar on http://{host}:{port}  (docs: /docs, data: {settings.platform.data_dir})"
    )
    Server(
        "bazaar.runtime.embedded:create_embedded_app",
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=1,
        factory=True,
        log_access=False,
    ).serve()


class Service(StrEnum):
    identity = "identity"
    catalog = "catalog"
    orders = "orders"
    payments = "payments"
    notifications = "notifications"


ServiceName = Annotated[Service, typer.Argument(help="The service this process runs.")]


def _scaled_settings(kind: str, service: str) -> None:
    """Refuse at once, naming the variable, what the process could not run with."""
    from bazaar.runtime.config import ProcessKind
    from bazaar.runtime.processes import settings_for

    try:
        settings_for(ProcessKind(kind), service)
    except SettingsError as error:
        console.print(f"[red]Bad setting[/red] {error}")
        raise typer.Exit(2) from None


@app.command()
def serve(
    service: ServiceName,
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    workers: Annotated[int, typer.Option(min=1, help="Worker processes (granian).")] = 1,
) -> None:
    """One service's HTTP API, on the real servers (no relay, no consumers: see `worker`)."""
    from granian.constants import Interfaces
    from granian.server import Server

    service = Service(service).value
    _scaled_settings("serve", service)
    console.print(f"Bazaar {service} on http://{host}:{port}  (docs: /docs)")
    Server(
        f"bazaar.runtime.processes:serve_{service}",
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        factory=True,
        log_access=False,
        workers_kill_timeout=STOP_SECONDS,
    ).serve()


@app.command()
def worker(
    service: ServiceName,
    port: Annotated[
        int | None, typer.Option(help="Serve /healthz, /readyz and /metrics on this port.")
    ] = None,
    host: Annotated[str, typer.Option(help="Address of that port.")] = "127.0.0.1",
) -> None:
    """One service's outbox relay, event consumers and background loops, on the real servers.

    SIGTERM or SIGINT stops it cleanly: it takes no new message, lets the running handlers
    finish (a few seconds at most) and leaves the others to the broker for another worker.
    """
    service = Service(service).value
    _scaled_settings("worker", service)
    if port is None:
        from bazaar.runtime.processes import run_worker

        console.print(f"Bazaar {service} worker started")
        asyncio.run(run_worker(service))
        return
    from granian.constants import Interfaces
    from granian.server import Server

    console.print(f"Bazaar {service} worker, health on http://{host}:{port}/healthz")
    Server(
        f"bazaar.runtime.processes:worker_{service}",
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=1,
        factory=True,
        log_access=False,
        workers_kill_timeout=STOP_SECONDS,
    ).serve()


@app.command()
def migrate() -> None:
    """Apply the database migrations of every service and shard."""
    from bazaar.runtime.embedded import Runtime

    async def run() -> None:
        runtime = Runtime(_settings())
        try:
            await runtime.migrate()
        finally:
            await runtime.platform.close()

    try:
        asyncio.run(run())
    except SettingsError as error:  # a server that the settings name does not answer
        console.print(f"[red]Bad setting[/red] {error}")
        raise typer.Exit(2) from None
    console.print("[green]Every database is migrated.[/green]")


@admin.command("create")
def admin_create(
    email: Annotated[str, typer.Option(help="The admin's email.")],
    password: Annotated[str, typer.Option(help="At least 8 characters.")],
    name: Annotated[str, typer.Option(help="Display name.")] = "Administrator",
) -> None:
    """Create an admin account (migrating first if needed).

    Its `user.registered` event stays in identity's outbox until a running Bazaar's relay
    publishes it (at once, or at that process's next start).
    """
    from bazaar.identity import service
    from bazaar.identity.wiring import passwords
    from bazaar.platform.auth import ADMIN
    from bazaar.platform.errors import BazaarError
    from bazaar.runtime.embedded import Runtime

    if not 8 <= len(password) <= 128:
        console.print("[red]The password must be 8 to 128 characters.[/red]")
        raise typer.Exit(2)

    async def run() -> str:
        runtime = Runtime(_settings())
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


@app.command()
def seed(
    products: Annotated[int, typer.Option(min=1, help="How many products to generate.")],
) -> None:
    """Fill the catalog with generated products (migrating first if needed)."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from bazaar.catalog.seed import seed_products
    from bazaar.runtime.embedded import Runtime

    async def run() -> int:
        runtime = Runtime(_settings())
        try:
            await runtime.migrate()
            with Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            ) as progress:
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


def _dead_letters(replay: bool, consumer: str | None, event_id: str | None) -> list[tuple]:
    """(consumer, event id, type, why, when) of the dead letters, replayed first if asked: the
    broker's dead-letter queues when BAZAAR_BROKER_URL is set, else the dead_letter tables."""
    from bazaar.platform import bus
    from bazaar.platform.rabbitmq import RabbitMQBus
    from bazaar.runtime.embedded import Runtime

    async def run() -> list[tuple]:
        runtime = Runtime(_settings())
        subscriptions = [s for part in runtime.parts for s in part.subscriptions]
        consumers = {s.consumer for s in subscriptions if not s.is_broadcast}
        if consumer is not None:
            consumers &= {consumer}
        try:
            broker = runtime.platform.bus
            if isinstance(broker, RabbitMQBus):
                if replay:
                    letters = await broker.replay_dead_letters(consumers, event_id)
                else:
                    letters = await broker.dead_letters(consumers)
                return [
                    (d.consumer, d.event_id, d.type, d.reason, d.failed_at)
                    for d in letters
                    if event_id in (None, d.event_id)
                ]
            await runtime.migrate()
            found = []
            for db in {id(db): db for part in runtime.parts for db in part.databases}.values():
                rows = await bus.stored_dead_letters(db, consumer)
                found += [
                    (r.consumer, r.event_id, r.type, r.error.splitlines()[-1], r.failed_at)
                    for r in rows
                    if event_id in (None, r.event_id)
                ]
                if replay:
                    await bus.replay_stored_dead_letters(
                        db, subscriptions, consumer=consumer, event_id=event_id
                    )
            return found
        finally:
            await runtime.platform.close()

    return asyncio.run(run())


@dlq.command("list")
def dlq_list(
    consumer: Annotated[str | None, typer.Option(help="Only this consumer's.")] = None,
) -> None:
    """List the messages that failed too often (consumer, event id, type, why, when)."""
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


def _up_failed(error: Exception) -> typer.Exit:
    console.print(f"[red]{error}[/red]")
    return typer.Exit(1)


@app.command()
def up(
    instances: Annotated[
        str | None, typer.Option(help="Instances per service, e.g. catalog=4,orders=2 (2 each).")
    ] = None,
    replicas: Annotated[int, typer.Option(help="PostgreSQL streaming replicas.")] = 1,
    shards: Annotated[int, typer.Option(help="Order shard databases (fixed once made).")] = 2,
    port: Annotated[int, typer.Option(help="HAProxy's port: the whole API.")] = 8000,
    stats_port: Annotated[int, typer.Option(help="HAProxy's stats page (/stats).")] = 8404,
    detach: Annotated[bool, typer.Option(help="Return once up; `bazaar down` stops.")] = False,
) -> None:
    """The scaled topology on one machine: HAProxy in front of N instances of every service,
    a worker per service, PostgreSQL primary + replicas + shards, Redis, RabbitMQ (named by
    BAZAAR_BROKER_URL) and a mail sink, all under supervisord. Ctrl-C stops everything."""
    import signal
    import time

    from bazaar.runtime import up as scaled
    from bazaar.runtime.topology import Topology, TopologyError, parse_instances

    say = console.print
    try:
        topology = Topology(parse_instances(instances), replicas, shards, port, stats_port)
        scaled.up(topology, os.environ, say)
    except (TopologyError, scaled.UpError) as error:
        raise _up_failed(error) from None
    console.print(
        f"[green]Bazaar is up[/green] on http://127.0.0.1:{port}  (stats"
        f" http://127.0.0.1:{stats_port}/stats; `bazaar status`, `bazaar logs SERVICE`)"
    )
    if detach:
        return
    stopping: list[int] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda number, _frame: stopping.append(number))
    console.print("Ctrl-C stops everything.")
    while not stopping:
        time.sleep(0.5)
    scaled.down(os.environ, say)
    console.print("[green]Stopped.[/green]")


@app.command()
def down() -> None:
    """Stop everything `bazaar up` started (the data stays for the next `up`)."""
    from bazaar.runtime import up as scaled

    pids = scaled.down(os.environ, console.print)
    console.print(f"[green]Down[/green]: {len(pids)} process(es) stopped, none left.")


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """Every process (state, pid, uptime, restarts, readiness), HAProxy's view of each
    backend, replica lag, queue depths and dead letters, emails in the mail sink."""
    import json

    from bazaar.runtime.status import gather, render

    report = gather(os.environ)
    typer.echo(json.dumps(report, indent=2) if as_json else render(report))
    if not report["up"]:
        raise typer.Exit(1)


@app.command()
def logs(
    target: Annotated[str, typer.Argument(help="A service, or catalog-0, haproxy, redis...")],
    lines: Annotated[int, typer.Option("-n", help="Lines from the end.")] = 50,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing.")] = False,
) -> None:
    """Tail the logs of a service's processes under `bazaar up`."""
    from bazaar.runtime.control import log_files, tail
    from bazaar.runtime.up import UpError

    try:
        files = log_files(target, os.environ)
    except UpError as error:
        raise _up_failed(error) from None
    raise typer.Exit(tail(files, lines, follow))


@app.command()
def restart(service: Annotated[str, typer.Argument(help="identity, catalog, orders, ...")]) -> None:
    """Rolling restart: one instance at a time, each back and ready before the next."""
    from bazaar.runtime.control import restart as rolling
    from bazaar.runtime.up import UpError

    try:
        rolling(service, os.environ, console.print)
    except UpError as error:
        raise _up_failed(error) from None
    console.print(f"[green]{service} restarted[/green]")


@app.command(hidden=True)
def mailsink(
    port: Annotated[int, typer.Option(help="SMTP port on 127.0.0.1.")],
    folder: Annotated[Path, typer.Option(help="Where each message becomes an .eml file.")],
) -> None:
    """The local SMTP sink `bazaar up` runs."""
    from bazaar.runtime.mailsink import run_mail_sink

    run_mail_sink(folder, port)


@app.command("makemigration", hidden=True)
def make_migration(
    service_name: Annotated[str, typer.Argument(help="identity, catalog, orders, ...")],
    message: Annotated[str, typer.Option("-m", help="What the revision does.")],
) -> None:
    """For developers: write a migration with what a service's models add."""
    from bazaar.platform import migrations
    from bazaar.runtime.embedded import Runtime

    async def run() -> None:
        runtime = Runtime(_settings())
        try:
            part = next(p for p in runtime.parts if p.name == service_name)
            await migrations.upgrade(part.databases[0], part.schema)
            await migrations.new_revision(part.databases[0], part.schema, message)
        finally:
            await runtime.platform.close()

    asyncio.run(run())


def main() -> None:  # pragma: no cover - the console script's entry point
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()
