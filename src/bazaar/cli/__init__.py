"""The `bazaar` command line."""

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from bazaar.platform.settings import PREFIX, SettingsError

if TYPE_CHECKING:  # imported where used, so that a command loads only what it needs
    from rich.progress import Progress

    from bazaar.cli.target import Target
    from bazaar.runtime.config import Settings

app = typer.Typer(help="Bazaar: a horizontally scalable e-commerce backend.", no_args_is_help=True)
admin = typer.Typer(help="Administrator accounts.", no_args_is_help=True)
app.add_typer(admin, name="admin")
dlq = typer.Typer(help="Dead-lettered messages: list and replay.", no_args_is_help=True)
app.add_typer(dlq, name="dlq")
console = Console(stderr=True)
STOP_SECONDS = 20
"""How long granian lets a process stop cleanly before killing it."""


ENV_FILE = f"{PREFIX}ENV_FILE"
"""The file of settings read at start: `.env` in the working directory unless it names
another; set empty, none (the processes `bazaar up` starts: their environment is complete)."""


def _print_version(asked: bool) -> None:
    if asked:
        from importlib.metadata import version

        typer.echo(f"bazaar {version('bazaar')}")
        raise typer.Exit()


@app.callback()
def start(
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Bazaar: a horizontally scalable e-commerce backend."""
    read_dotenv()


def read_dotenv() -> None:
    """Put the `.env` file's variables (see `ENV_FILE`) into the environment, under it: a
    variable set in both keeps the environment's value. Read once, before any command."""
    from dotenv import load_dotenv

    named = os.environ.get(ENV_FILE)
    path = Path(".env" if named is None else named)
    if named == "":
        return
    if named is not None and not path.is_file():
        console.print(f"[red]Bad setting[/red] {ENV_FILE}: no file {str(path)!r}")
        raise typer.Exit(2)
    load_dotenv(path, override=False)


def settings_or_exit() -> "Settings":
    """The settings the environment names (for `dev`, which is always the embedded app)."""
    from bazaar.runtime.config import Settings

    try:
        return Settings.from_env()
    except SettingsError as error:
        console.print(f"[red]Bad setting[/red] {error}")
        raise typer.Exit(2) from None


def target_or_exit() -> "Target":
    """Where a data command works (`bazaar.cli.target`), with its settings; said on standard
    error."""
    from bazaar.cli.target import choose_target

    try:
        target = choose_target(os.environ)
    except SettingsError as error:
        console.print(f"[red]Bad setting[/red] {error}")
        raise typer.Exit(2) from None
    console.print(target.describe(), markup=False, highlight=False, soft_wrap=True)
    if target.set_aside:
        console.print(
            f"Not used while it runs: {', '.join(target.set_aside)}"
            f" ({PREFIX}TARGET=environment uses them instead)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    return target


def progress_bar() -> "Progress":
    """A progress bar on standard error: what is being done, how far, for how long."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def main() -> None:  # pragma: no cover - the console script's entry point
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()


# The commands, by what they are about; each module adds its own to `app`.
from bazaar.cli import processes, data, topology, bench, chaos, config, top, autoscale  # noqa: E402, F401, I001
