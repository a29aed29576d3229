"""`bazaar bench`: the load generator, the scaling experiment and the capacity report.

The benchmark itself lives in the repository's `bench/` package (workloads, experiment,
report); this module only reads the options and shows progress.
"""

import shutil
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from bazaar.cli import app, console, progress_bar
from bazaar.platform.settings import Env, read_data_dir

bench = typer.Typer(
    help="The load generator, the scaling experiment and the capacity report.",
    invoke_without_command=True,
)
app.add_typer(bench, name="bench")
PUBLISHED = Path("docs/capacity")
"""Where the report of record is committed; a run's figures are set beside its."""


class Mode(StrEnum):
    embedded = "embedded"
    """`bazaar dev`: every service in one process, on SQLite."""
    scaled = "scaled"
    """`bazaar up`: the scaled topology."""
    both = "both"
    tracing = "tracing"
    """Only what tracing costs (on `bazaar dev`, off, at 1% and at 100%)."""


def _runs_root() -> Path:
    """Where each run gets a folder of its own, under the data dir the settings name."""
    return read_data_dir(Env()) / "bench"


def _import_bench() -> None:
    try:
        import bench.report
        import bench.runner
        import bench.source  # noqa: F401
    except ImportError as error:
        console.print(
            f"[red]The benchmark cannot load[/red] ({error}): run from the repository, with"
            " `pip install -e '.[bench]'` (the Makefile does)."
        )
        raise typer.Exit(2) from None


@bench.callback()
def run(
    context: typer.Context,
    quick: Annotated[
        bool, typer.Option(help="A one-minute smoke of every workload; fails on any error.")
    ] = False,
    mode: Annotated[
        Mode,
        typer.Option(
            help="embedded (bazaar dev), scaled (bazaar up), both, or tracing (only what"
            " tracing costs)."
        ),
    ] = Mode.both,
    seconds: Annotated[float | None, typer.Option(help="Seconds per wrk measurement.")] = None,
    products: Annotated[int | None, typer.Option(help="Products to seed.")] = None,
    instances: Annotated[
        str | None, typer.Option(help="Instance counts of the scaling experiment, e.g. 1,2,4,8.")
    ] = None,
    publish: Annotated[
        bool, typer.Option(help=f"Copy the report to {PUBLISHED}/ (the figures of record).")
    ] = False,
    baseline: Annotated[
        str | None,
        typer.Option(
            help="A commit (e.g. b01d6e7) built from git and measured beside this code in the"
            " same run, each workload on the two in turn; the report sets them side by side."
        ),
    ] = None,
    tracing: Annotated[
        bool | None,
        typer.Option(
            help="Measure what tracing costs: the cached page and the checkout on `bazaar dev`"
            " with tracing off, at 1% and at 100%, exporting to a sink of the bench's."
            " On by default, off with --quick.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run the benchmark: every workload in each mode, the scaling experiment, the report."""
    if context.invoked_subcommand is not None:
        return
    _import_bench()
    from dataclasses import replace

    from bench import report, runner, source, tracing_section
    from bench.plan import Plan

    plan = Plan.quick() if quick else Plan()
    if baseline:
        try:
            source.resolve(baseline)
        except source.SourceError as error:
            console.print(f"[red]No baseline[/red]: {error}")
            raise typer.Exit(2) from None
        plan = replace(plan, baseline=baseline)
    if mode is Mode.tracing:
        if publish:  # it would replace the whole report of record with one section
            console.print("[red]--publish is for a full run[/red], not --mode tracing alone.")
            raise typer.Exit(2)
        plan = replace(plan, modes=(), tracing=True)
    elif mode is not Mode.both:
        plan = replace(plan, modes=(mode.value,))
    if tracing is not None and mode is not Mode.tracing:
        plan = replace(plan, tracing=tracing)
    if seconds:
        plan = replace(plan, seconds=seconds, journey_seconds=2 * seconds)
    if products:
        plan = replace(plan, products=products)
    if instances:
        plan = replace(plan, instances=tuple(int(n) for n in instances.split(",")))
    root = _runs_root()
    folder = runner.new_folder(root)
    if "scaled" in plan.modes:
        console.print(
            "While the scaled mode runs, `bazaar top` shows its `bazaar up` live (beside an"
            f" `up` of your own: BAZAAR_DATA_DIR={folder / 'scaled' / 'data'} bazaar top)."
        )
    with progress_bar() as progress:
        task = progress.add_task("Starting", total=plan.steps())
        started = [False]

        def step(what: str) -> None:
            if started[0]:
                progress.advance(task)
            started[0] = True
            progress.update(task, description=what)
            if not console.is_terminal:  # no live bar in a log: a line per step instead
                done = progress.tasks[0].completed
                console.print(f"[{done:.0f}/{plan.steps()}] {what}")

        result = runner.run(plan, folder, step, quick)
        progress.update(task, completed=plan.steps(), description="Done")
    previous = report.previous_run(root, folder, PUBLISHED / "results.json")
    written = report.write_report(result, folder, previous)
    for target in result.targets:
        mark = "[green]met[/green]" if target.met else "[yellow]missed[/yellow]"
        console.print(f"  {mark}  {target.name}: {target.value} (bound {target.bound})")
    for line in report.against_baseline_lines(result) + tracing_section.summary_lines(result):
        console.print(f"  {line}")
    console.print(f"Report: {written}")
    if publish:
        _publish(folder, [m.profile for m in result.modes.values() if m.profile])
    if quick:
        failures = runner.smoke_failures(result)
        for failure in failures:
            console.print(f"[red]FAILED[/red] {failure}")
        if failures:
            raise typer.Exit(1)
        console.print("[green]Smoke passed[/green]: no error, every order settled, bounds held.")


def _publish(folder: Path, profiles: list[str]) -> None:
    """The report, its plots, its results and the profiles it links, as the figures of
    record (the other profiles stay in the run's folder)."""
    kept = {p.name: p.read_bytes() for p in PUBLISHED.glob("ramp.*")}  # `bench ramp`'s own
    shutil.rmtree(PUBLISHED, ignore_errors=True)
    PUBLISHED.mkdir(parents=True)
    for name, content in kept.items():
        (PUBLISHED / name).write_bytes(content)
    for path in folder.iterdir():
        if path.name in ("report.md", "results.json", *profiles) or path.suffix == ".png":
            shutil.copy2(path, PUBLISHED / path.name)
    if "ramp.md" in kept:
        from bench.ramp_report import link_in_report

        link_in_report(PUBLISHED / "report.md", PUBLISHED / "ramp.md")
    console.print(f"Published to {PUBLISHED}/")


@bench.command("ramp")
def ramp_command(
    base_rps: Annotated[
        float, typer.Option(help="The first step's offered rate; the ramp peaks at 10 times it.")
    ] = 100.0,
    quota: Annotated[float, typer.Option(help="Cores each catalog instance may use.")] = 0.1,
    least: Annotated[int, typer.Option(help="The autoscaler's minimum of catalog instances.")] = 2,
    most: Annotated[int, typer.Option(help="The autoscaler's maximum of catalog instances.")] = 8,
    stretch: Annotated[float, typer.Option(help="Every step's length times this.")] = 1.0,
    publish: Annotated[
        bool, typer.Option(help=f"Copy ramp.md, ramp.png and ramp.json to {PUBLISHED}/.")
    ] = False,
) -> None:
    """The ramp against `bazaar up --autoscale`: load up tenfold, held, down; the plot of
    offered and achieved load, p99, errors and instances on one time axis (ramp.md)."""
    _import_bench()
    from bench import runner
    from bench.ramp import judge, run_ramp
    from bench.ramp_report import PLOT, link_in_report, write_ramp_report

    folder = runner.new_folder(_runs_root())
    result = run_ramp(folder, base_rps, quota, most, console.print, stretch, minimum=least)
    written = write_ramp_report(result, folder)
    for verdict in judge(result):
        mark = "[green]met[/green]" if verdict.met else "[yellow]missed[/yellow]"
        console.print(f"  {mark}  {verdict.name}: {verdict.value}")
    console.print(f"Report: {written}")
    if publish:
        PUBLISHED.mkdir(parents=True, exist_ok=True)
        for name in ("ramp.md", PLOT, "ramp.json"):
            shutil.copy2(folder / name, PUBLISHED / name)
        if (PUBLISHED / "report.md").exists():
            link_in_report(PUBLISHED / "report.md", PUBLISHED / "ramp.md")
        console.print(f"Published to {PUBLISHED}/")


@bench.command("report")
def report_command(
    folder: Annotated[
        Path | None, typer.Argument(help="A run's folder (the newest run when left out).")
    ] = None,
) -> None:
    """Write a run's Markdown report and plots again from its results.json."""
    _import_bench()
    from bench import report

    root = _runs_root()
    if folder is None:
        runs = sorted(p for p in root.glob("*") if (p / "results.json").exists())
        if not runs:
            console.print(f"[red]No run[/red] under {root}: `bazaar bench` first.")
            raise typer.Exit(1)
        folder = runs[-1]
    written = report.redraw(folder, root, PUBLISHED / "results.json")
    console.print(f"Report: {written}")
