"""`bazaar top`: the whole shop on one terminal screen, read from Prometheus every second."""

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from bazaar.cli import app, console
from bazaar.platform.settings import Env, read_data_dir

if TYPE_CHECKING:  # imported where used, so that a command loads only what it needs
    from bazaar.runtime.cluster.folder import Folder
    from bazaar.runtime.cluster.views import Alert, Figure, Prometheus, Row, Snapshot, View

FRAME_WIDTH = 160
"""The width of a frame printed to a file or a pipe (`--once`) when COLUMNS does not say."""


@app.command()
def top(
    prometheus: Annotated[
        str | None,
        typer.Option(
            help="The Prometheus to read, e.g. http://127.0.0.1:9090 (a port-forwarded one);"
            " by default the one of the `bazaar up` running on this data folder."
        ),
    ] = None,
    once: Annotated[bool, typer.Option(help="Print one frame and exit.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between frames.", min=0.2)] = 1.0,
) -> None:
    """A live view: per service the processes up, requests a second, p50/p99, errors and
    CPU; the checkout saga; queues, outbox, replicas, pools; the alerts. Ctrl-C quits."""
    from bazaar.runtime.cluster import views

    client = views.Prometheus(prometheus or _running_prometheus())
    try:
        if once:
            try:
                frame = render(views.snapshot(client), client.url)
            except views.PrometheusUnreachable as error:
                console.print(f"[red]{error}[/red]")
                raise typer.Exit(1) from None
            out = Console(soft_wrap=False)
            if not out.is_terminal and not out.is_jupyter and "COLUMNS" not in os.environ:
                out.width = FRAME_WIDTH
            out.print(frame)
            return
        _watch(client, interval)
    finally:
        client.close()


def _running_prometheus() -> str:
    """The Prometheus of the `bazaar up` that runs on this data folder, else of the one a
    `bazaar bench` runs (`<data dir>/bench/<run>/scaled/`), or a clear exit."""
    from bazaar.runtime.cluster.folder import Folder
    from bazaar.runtime.cluster.record import RunRecord

    data_dir = read_data_dir(Env())
    folder = Folder(data_dir)
    if not folder.run.is_file():
        bench = _bench_up(data_dir)
        if bench is None:
            console.print(
                f"[red]No `bazaar up` runs here[/red] (no {folder.run}, nor a `bazaar bench`"
                " in its scaled mode): start one with `bazaar up`, or name a Prometheus with"
                " --prometheus URL."
            )
            raise typer.Exit(1)
        console.print(f"Watching the `bazaar up` of `bazaar bench` at {bench.root}")
        folder = bench
    port = RunRecord.load(folder.run).topology.prometheus_port
    if port is None:
        console.print(
            "[red]This `bazaar up` runs no Prometheus[/red] (it was started before `up` had"
            " one): `bazaar down`, then `bazaar up` again."
        )
        raise typer.Exit(1)
    return f"http://127.0.0.1:{port}"


def _bench_up(data_dir: Path) -> "Folder | None":
    """The `bazaar up` of the newest `bazaar bench` run under `data_dir` whose supervisor is
    alive: this code's before a baseline commit's (each runs its own, in the run's folder)."""
    from bazaar.runtime.cluster.folder import Folder
    from bazaar.runtime.cluster.record import RunRecord
    from bazaar.runtime.cluster.supervisor import is_alive

    for run in sorted((data_dir / "bench").glob("*/scaled"), reverse=True):
        for candidate in (run / "data", *sorted(run.glob("*/data"))):
            folder = Folder(candidate)
            try:
                alive = is_alive(RunRecord.load(folder.run).supervisord_pid)
            except (OSError, ValueError):  # no run.json: not started, or stopped
                continue
            if alive:
                return folder
    return None


def _watch(client: "Prometheus", interval: float) -> None:
    from rich.live import Live

    from bazaar.runtime.cluster import views

    with Live(console=Console(), screen=True, auto_refresh=False) as live:
        try:
            while True:
                try:
                    frame = render(views.snapshot(client), client.url)
                except views.PrometheusUnreachable as error:
                    frame = _header(client.url, f"[red]{error}[/red] (trying again)")
                live.update(frame, refresh=True)
                time.sleep(interval)
        except KeyboardInterrupt:
            pass


def _header(url: str, note: str = "") -> Text:
    line = Text.from_markup(
        f"[bold]Bazaar top[/bold]  Prometheus {url}  {time.strftime('%H:%M:%S')}"
        "  [dim](Ctrl-C quits)[/dim]"
    )
    if note:
        line.append("\n").append_text(Text.from_markup(note))
    return line


def render(snapshot: "Snapshot", url: str) -> RenderableType:
    """One frame: the services beside the saga, the queues beside the replicas, the pools
    beside the outboxes, then the alerts."""
    from bazaar.runtime.cluster import views

    def table(view: "View") -> Table:
        return _table(view, snapshot.rows[view.title], snapshot.errors.get(view.title))

    blank = Text("")
    return Group(
        _header(url),
        blank,
        _beside(
            table(views.SERVICES_VIEW),
            Group(table(views.SAGA_VIEW), blank, table(views.OUTCOMES_VIEW)),
        ),
        blank,
        _beside(table(views.QUEUES_VIEW), table(views.REPLICAS_VIEW)),
        blank,
        _beside(table(views.POOLS_VIEW), table(views.OUTBOX_VIEW)),
        blank,
        _alerts(snapshot.alerts),
    )


def _beside(*parts: RenderableType) -> Table:
    grid = Table.grid(padding=(0, 4))
    grid.add_row(*parts)
    return grid


def _table(view: "View", rows: "list[Row]", error: str | None) -> Table:
    table = Table(
        title=view.title,
        title_justify="left",
        title_style="bold",
        box=None,
        header_style="dim",
        padding=(0, 1),
        caption=f"[red]query refused: {error}[/red]" if error else None,
    )
    for label in view.by:
        table.add_column(label, no_wrap=True)
    for figure in view.figures:
        table.add_column(figure.title, justify="right")
    for key, values in rows:
        cells = [
            _cell(figure, value, values) for figure, value in zip(view.figures, values, strict=True)
        ]
        table.add_row(*key, *cells)
    if not rows and not error:
        table.add_row(*(["-"] * (len(view.by) + len(view.figures))))
    return table


BAD = {
    "5xx %": lambda value: value > 0.001,
    "dead": lambda value: value > 0,
    "answers": lambda value: value < 1,
}
"""When a figure is worth red: over the availability SLO, dead letters, a replica gone."""


def _cell(figure: "Figure", value: float | None, row: list[float | None]) -> Text:
    text = Text(format_value(value, figure.unit))
    bad = BAD.get(figure.title)
    if value is not None and bad is not None and bad(value):
        text.stylize("bold red")
    # fewer processes up than scraped: the row's first figure against its second
    if figure.title == "up" and value is not None and row[1] is not None and value < row[1]:
        text.stylize("bold red")
    return text


def format_value(value: float | None, unit: str) -> str:
    """A figure as a person reads it: milliseconds, percents, a rate to one decimal."""
    if value is None:
        return "-"
    match unit:
        case "rate":
            return f"{value:.1f}" if value < 100 else f"{value:.0f}"
        case "seconds":
            if value < 1:
                return f"{value * 1000:.1f} ms"
            return f"{value:.2f} s"
        case "ratio":
            return f"{value * 100:.2f}%"
        case "cores":
            return f"{value:.2f}"
        case "bytes":
            for size, suffix in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
                if value >= size:
                    return f"{value / size:.1f} {suffix}"
            return f"{value:.0f} B"
        case "yes_no":
            return "yes" if value >= 1 else "no"
        case _:
            return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


def _alerts(alerts: "list[Alert]") -> RenderableType:
    if not alerts:
        return Text.from_markup("[bold]Alerts[/bold]  [green]none firing or pending[/green]")
    table = Table(
        title="Alerts", title_justify="left", title_style="bold", box=None, header_style="dim"
    )
    for column in ("state", "severity", "alert", "summary"):
        table.add_column(column)
    for alert in alerts:
        style = "bold red" if alert.state == "firing" else "yellow"
        table.add_row(Text(alert.state, style=style), alert.severity, alert.name, alert.summary)
    return table
