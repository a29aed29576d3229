"""`bazaar config`: the effective settings, as a data command would use them, secrets masked."""

import dataclasses
import re
from collections.abc import Iterator
from enum import Enum
from pathlib import Path

import typer

from bazaar.cli import app, target_or_exit
from bazaar.platform.settings import masked
from bazaar.platform.shards import ShardMap

SECRET = re.compile(r"(^|_)(key|keys|secret|password|token)$")
"""A setting whose value is hidden whole (a signing key, a token), set or not."""


@app.command()
def config() -> None:
    """Print the effective settings, one per line (`section.name = value`): those of the
    target `admin create`, `seed` and `migrate` would use, with the `.env` file read and
    every password, key, token and secret masked."""
    target = target_or_exit()
    typer.echo(f"target = {target.source.value} ({target.folder})")
    for name, value in _flattened(target.settings):
        typer.echo(f"{name} = {_shown(name, value)}")


def _flattened(settings: object, prefix: str = "") -> Iterator[tuple[str, object]]:
    for field in dataclasses.fields(settings):  # type: ignore[arg-type]
        value = getattr(settings, field.name)
        name = prefix + field.name
        if dataclasses.is_dataclass(value) and not isinstance(value, ShardMap | type):
            yield from _flattened(value, name + ".")
        else:
            yield name, value


def _shown(name: str, value: object) -> str:
    if value is None or value == ():
        return "(unset)"
    if SECRET.search(name.rpartition(".")[2]):
        return "*** (set)"
    if isinstance(value, tuple):
        return ",".join(_shown(name, part) for part in value)
    if isinstance(value, ShardMap):
        return value.describe()
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, str | Path):
        return masked(str(value))
    return str(value)
