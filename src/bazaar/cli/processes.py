"""Running Bazaar: every service in one process, one service's API or worker, migrations."""

import asyncio
import os
from enum import StrEnum
from typing import Annotated

import typer

from bazaar.cli import STOP_SECONDS, app, console, settings_or_exit, target_or_exit
from bazaar.platform.settings import SettingsError


@app.command()
def dev(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
) -> None:
    """Every service in one process, on the embedded default: no server to install."""
    data = str(settings_or_exit().platform.data_dir)
    _run_granian(
        "bazaar.runtime.embedded:create_embedded_app", host, port, service="all", data=data
    )


def _run_granian(
    factory: str, host: str, port: int, workers: int = 1, *, service: str, **started: str
) -> None:
    """Serve the ASGI app `factory` builds ("module:function") with granian until stopped,
    on uvloop: a cached product page 34k -> 44k req/s on one core against the asyncio loop
    (wrk, alternating); reads and orders that wait on a database were unchanged.

    Every line of granian's processes is one of Bazaar's (`bazaar.platform.logs`), the
    first, `bazaar_listening` with `started`'s fields, included; at the debug level, one per
    request as well, with its request and trace ids (granian's access log)."""
    from granian.constants import Interfaces, Loops
    from granian.log import LogLevels
    from granian.server import Server

    from bazaar.platform.logs import ACCESS_LOG_FORMAT, granian_logging, instance_name
    from bazaar.platform.observability import log

    platform = settings_or_exit().platform
    logging_config = granian_logging(
        platform.log_level,
        json=platform.log_json,
        service=service,
        instance=instance_name(port, os.environ),
    )
    server = Server(
        factory,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        factory=True,
        log_access=platform.log_level == "debug",  # a line per request costs at full load
        log_access_format=ACCESS_LOG_FORMAT,
        log_level=LogLevels(platform.log_level),
        log_dictconfig=logging_config,
        workers_kill_timeout=STOP_SECONDS,
        loop=Loops.uvloop,
    )
    log.info("bazaar_listening", url=f"http://{host}:{port}", **started)
    server.serve()


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
    name = Service(service).value
    _scaled_settings("serve", name)
    docs = f"http://{host}:{port}/docs"
    _run_granian(
        f"bazaar.runtime.processes:serve_{name}", host, port, workers, service=name, docs=docs
    )


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
    name = Service(service).value
    _scaled_settings("worker", name)
    if port is None:
        import uvloop

        from bazaar.runtime.processes import run_worker

        uvloop.run(run_worker(name))
        return
    health = f"http://{host}:{port}/healthz"
    _run_granian(f"bazaar.runtime.processes:worker_{name}", host, port, service=name, health=health)


@app.command()
def migrate() -> None:
    """Apply the database migrations of every service and shard."""
    from bazaar.runtime.embedded import Runtime

    settings = target_or_exit().settings

    async def run() -> None:
        runtime = Runtime(settings)
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


@app.command("makemigration", hidden=True)
def make_migration(
    service: Annotated[Service, typer.Argument(help="The service whose models changed.")],
    message: Annotated[str, typer.Option("-m", help="What the revision does.")],
) -> None:
    """For developers: write a migration with what a service's models add."""
    from bazaar.platform import migrations
    from bazaar.runtime.embedded import Runtime

    async def run() -> None:
        runtime = Runtime(settings_or_exit())
        try:
            part = next(p for p in runtime.parts if p.name == service.value)
            await migrations.upgrade(part.databases[0], part.schema)
            await migrations.new_revision(part.databases[0], part.schema, message)
        finally:
            await runtime.platform.close()

    asyncio.run(run())
