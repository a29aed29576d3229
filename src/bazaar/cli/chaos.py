"""`bazaar chaos`: every fault scenario against a fresh `bazaar up`, and its report.

The scenarios, the fault kit and the report live in the repository's `chaos/` package; this
module only reads the options and shows progress.
"""

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from bazaar.cli import app, console, progress_bar
from bazaar.platform.settings import Env, read_data_dir

PUBLISHED = Path("docs/chaos")
"""Where the report of record is committed, beside the capacity report."""


@app.command()
def chaos(
    quick: Annotated[
        bool, typer.Option(help="The few scenarios CI runs, each shorter; fails on any loss.")
    ] = False,
    scenario: Annotated[
        list[str] | None, typer.Option(help="Only this scenario (repeatable); see --list.")
    ] = None,
    list_them: Annotated[bool, typer.Option("--list", help="The scenarios, and stop.")] = False,
    publish: Annotated[
        bool, typer.Option(help=f"Copy the report to {PUBLISHED}/ (the figures of record).")
    ] = False,
) -> None:
    """Run the fault scenarios under a checkout stream against a fresh `bazaar up`, check
    that nothing was lost, and write the report with a timeline per fault."""
    try:
        from chaos import report, runner
        from chaos.scenarios import BY_NAME, SCENARIOS
    except ImportError as error:
        console.print(
            f"[red]The chaos suite cannot load[/red] ({error}): run from the repository, with"
            " `pip install -e '.[bench]'` (the Makefile does)."
        )
        raise typer.Exit(2) from None
    if list_them:
        for known in SCENARIOS:
            print(f"{known.name:26} {'quick ' if known.quick else '      '}{known.fault}")
        return
    unknown = [name for name in scenario or [] if name not in BY_NAME]
    if unknown:
        raise typer.BadParameter(
            f"unknown: {', '.join(unknown)} (see --list)", param_hint="--scenario"
        )
    chosen = [BY_NAME[name] for name in scenario] if scenario else [
        s for s in SCENARIOS if s.quick or not quick
    ]  # fmt: skip
    pace = runner.QUICK if quick else runner.FULL
    folder = read_data_dir(Env()) / "chaos" / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    folder.mkdir(parents=True)
    results = []
    with progress_bar() as progress:
        task = progress.add_task("Starting bazaar up", total=len(chosen))

        def say(what: str) -> None:
            progress.update(task, description=what)
            if not console.is_terminal:  # no live bar in a log: a line per step instead
                console.print(what)

        try:
            with runner.started(folder, pace, say) as shop:
                for each in chosen:
                    results.append(runner.run_scenario(shop, each, pace, say))
                    progress.advance(task)
        except runner.ChaosError as error:
            console.print(f"[red]{error}[/red]")
            raise typer.Exit(1) from None
    written = report.write(folder, results, quick)
    for result in results:
        mark = "[green]kept[/green]" if result.passed else "[red]BROKEN[/red]"
        console.print(
            f"  {mark}  {result.name}: {result.accepted} accepted, {result.lost} lost,"
            f" recovery {result.recovery:.1f} s"
        )
        for violation in result.violations[:10]:
            console.print(f"      {violation}")
    console.print(f"Report: {written}")
    if publish:
        shutil.rmtree(PUBLISHED, ignore_errors=True)
        shutil.copytree(folder, PUBLISHED, ignore=shutil.ignore_patterns("data", "logs"))
        console.print(f"Published to {PUBLISHED}/")
    if not all(result.passed for result in results):
        raise typer.Exit(1)
