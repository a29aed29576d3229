"""The `bazaar` command line."""

import os
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from bazaar.platform.settings import SettingsError

if TYPE_CHECKING:  # imported where used, so that a command loads only what it needs
    from rich.progress import Progress

    from bazaar.runtime.config import Settings

app = typer.Typer(help="Bazaar: a horizontally scalable e-commerce backend.", no_args_is_help=True)
admin = typer.Typer(help="Administrator accounts.", no_args_is_help=True)
app.add_typer(admin, name="admin")
dlq = typer.Typer(help="Dead-lettered messages: list and replay.", no_args_is_help=True)
app.add_typer(dlq, name="dlq")
console = Console(stderr=True)
STOP_SECONDS = 20
"""How long granian lets a process stop cleanly before killing it."""


def settings_or_exit() -> "Settings":
    from bazaar.runtime.config import Settings

    try:
        return Settings.from_env()
    except SettingsError as error:
        console.print(f"[red]Bad setting[/red] {error}")
        raise typer.Exit(2) from None


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
from bazaar.cli import processes, data, topology, bench, chaos  # noqa: E402, F401, I001
