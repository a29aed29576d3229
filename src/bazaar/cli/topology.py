"""The scaled topology on one machine: `bazaar up`, `down`, `status`, `logs`, `restart`,
`scale`."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bazaar.cli import app, console
from bazaar.cli.processes import Service
from bazaar.platform.settings import Env, SettingsError, read_data_dir

if TYPE_CHECKING:  # imported where used, so that a command loads only what it needs
    from bazaar.runtime.cluster.folder import Folder
    from bazaar.runtime.cluster.record import RunAutoscale


def _folder() -> "Folder":
    """Where `bazaar up` keeps everything, under the data dir the settings name."""
    from bazaar.runtime.cluster.folder import Folder

    return Folder(read_data_dir(Env()))


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
    pgbouncer: Annotated[
        bool, typer.Option(help="PgBouncer (transaction pooling) before each PostgreSQL server.")
    ] = False,
    cpu_quota: Annotated[
        str | None,
        typer.Option(
            help="CPUs each API instance of a service may use, e.g. catalog=0.25,orders=0.5,"
            " or each of its workers, e.g. notifications-worker=0.1 (a cgroup per process;"
            " none by default)."
        ),
    ] = None,
    fault_proxies: Annotated[
        bool,
        typer.Option(
            help="A fault proxy between the processes and each server, for `bazaar chaos`."
        ),
    ] = False,
    autoscale: Annotated[
        str | None,
        typer.Option(
            help="Scale these services' instances on their load, e.g. catalog=1..8,orders=1..4,"
            " and workers on their queues, e.g. notifications-worker=1..3 (MIN running at"
            " first, up to MAX; the HPA's algorithm)."
        ),
    ] = None,
    autoscale_target: Annotated[
        str | None,
        typer.Option(
            help="Requests in flight per instance each autoscaled service is scaled to,"
            " e.g. catalog=4 (4 by default); ready messages per worker for workers, e.g."
            " notifications-worker=20 (100 by default)."
        ),
    ] = None,
) -> None:
    """The scaled topology on one machine: HAProxy in front of N instances of every service,
    its worker(s), PostgreSQL primary + replicas + shards, Redis, RabbitMQ (named by
    BAZAAR_BROKER_URL) and a mail sink, all under supervisord. Ctrl-C stops everything."""
    import signal
    import time

    from bazaar.runtime.cluster import up as scaled
    from bazaar.runtime.cluster.settings import UpSettings
    from bazaar.runtime.cluster.topology import (
        Topology,
        TopologyError,
        parse_cpu_quota,
        parse_instances,
    )

    def interrupt(_number: int, _frame: object) -> None:
        raise KeyboardInterrupt

    # Installed first, so that asyncio.run (waiting for a server) keeps it instead of turning
    # Ctrl-C into a cancellation that a client library may swallow.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, interrupt)
    say = console.print
    settings = UpSettings.from_env(Env())
    try:
        scaling = None if autoscale is None else _autoscale(autoscale, autoscale_target)
        topology = Topology(
            parse_instances(instances, scaling),
            replicas,
            shards,
            port,
            stats_port,
            pgbouncer,
            parse_cpu_quota(cpu_quota),
            fault_proxies,
            scaling,
        )
        scaled.up(topology, settings, say)
    except (TopologyError, scaled.UpError, SettingsError) as error:
        raise _up_failed(error) from None
    except KeyboardInterrupt:  # `up` has stopped what it started
        console.print("[yellow]Interrupted[/yellow]: stopped.")
        raise typer.Exit(130) from None
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
    scaled.down(settings.folder, say)
    console.print("[green]Stopped.[/green]")


def _autoscale(ranges: str, targets: str | None) -> "RunAutoscale":
    """The controller's ranges and targets, and its timing from the settings (shortened by
    the tests): BAZAAR_AUTOSCALE_PERIOD, _UP_WINDOW and _DOWN_WINDOW, in seconds."""
    from bazaar.runtime.cluster.hpa import ONE_MACHINE
    from bazaar.runtime.cluster.topology import parse_autoscale

    env = Env()
    return parse_autoscale(
        ranges,
        targets,
        period=env.number("AUTOSCALE_PERIOD", 2.0, minimum=0.1),
        up_window=env.number("AUTOSCALE_UP_WINDOW", ONE_MACHINE.up.window),
        down_window=env.number("AUTOSCALE_DOWN_WINDOW", ONE_MACHINE.down.window),
    )


@app.command()
def down() -> None:
    """Stop everything `bazaar up` started (the data stays for the next `up`)."""
    from bazaar.runtime.cluster import up as scaled

    pids = scaled.down(_folder(), console.print)
    console.print(f"[green]Down[/green]: {len(pids)} process(es) stopped, none left.")


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """Every process (state, pid, uptime, restarts, readiness), HAProxy's view of each
    backend, replica lag, queue depths and dead letters, emails in the mail sink."""
    import json

    from bazaar.runtime.cluster.status import gather, render

    report = gather(_folder())
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
    from bazaar.runtime.cluster.control import log_files, tail
    from bazaar.runtime.cluster.up import UpError

    try:
        files = log_files(target, _folder())
    except UpError as error:
        raise _up_failed(error) from None
    raise typer.Exit(tail(files, lines, follow))


@app.command()
def restart(service: Annotated[Service, typer.Argument(help="The service to restart.")]) -> None:
    """Rolling restart: one instance at a time, each back and ready before the next."""
    from bazaar.runtime.cluster.control import restart as rolling
    from bazaar.runtime.cluster.up import UpError

    try:
        rolling(service.value, _folder(), console.print)
    except UpError as error:
        raise _up_failed(error) from None
    console.print(f"[green]{service} restarted[/green]")


@app.command()
def scale(
    service: Annotated[Service, typer.Argument(help="The service to scale.")],
    count: Annotated[
        int, typer.Argument(min=1, help="Instances in service: 1 to those `up` started.")
    ],
) -> None:
    """Keep COUNT of the service's instances running and in HAProxy's rotation, and stop the
    others (drained first); raising COUNT starts them again. Refused (exit 2) for a service
    that `up --autoscale` named: its autoscaler sets the count."""
    from bazaar.runtime.cluster.control import Autoscaled, refuse_autoscaled, set_in_service
    from bazaar.runtime.cluster.up import UpError

    try:
        refuse_autoscaled(service.value, _folder())
        serving = set_in_service(service.value, count, _folder(), console.print)
    except Autoscaled as error:
        console.print(f"[red]Refused[/red]: {error}")
        raise typer.Exit(2) from None
    except UpError as error:
        raise _up_failed(error) from None
    console.print(f"[green]{service}[/green]: {', '.join(serving)} in service")


@app.command(hidden=True)
def mailsink(
    port: Annotated[int, typer.Option(help="SMTP port on 127.0.0.1.")],
    folder: Annotated[Path, typer.Option(help="Where each message becomes an .eml file.")],
) -> None:
    """The local SMTP sink `bazaar up` runs."""
    from bazaar.runtime.cluster.mailsink import run_mail_sink

    run_mail_sink(folder, port)


@app.command(hidden=True)
def faultproxy(
    control: Annotated[Path, typer.Option(help="The Unix socket that takes commands.")],
    route: Annotated[list[str], typer.Option(help="NAME=LISTEN:UPSTREAM (ports on loopback).")],
) -> None:
    """The fault proxies `bazaar up --fault-proxies` runs."""
    from bazaar.runtime.cluster.faultproxy import RouteSpec, run_fault_proxies

    run_fault_proxies([RouteSpec.parse(text) for text in route], control)
