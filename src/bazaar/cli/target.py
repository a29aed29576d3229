"""Which servers a data command (`admin create`, `seed`, `migrate`, `dlq`, `config`) works on:
the `bazaar up` running on the data folder if there is one, else the databases the `BAZAAR_*`
variables name, else the embedded default. The command says which, passwords masked."""

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from bazaar.platform.settings import (
    PREFIX,
    Env,
    PlatformSettings,
    SettingsError,
    masked,
    read_data_dir,
)
from bazaar.runtime.config import Settings


class Source(StrEnum):
    UP = "up"
    """The settings of the `bazaar up` running on the data folder, as its processes have
    them but with the servers themselves (`<data dir>/up/tools.env`)."""
    ENVIRONMENT = "environment"
    """The databases the `BAZAAR_*` variables name."""
    EMBEDDED = "embedded"
    """The SQLite files under the data dir (no `BAZAAR_DATABASE_URL`)."""


class Finding(StrEnum):
    """`BAZAAR_TARGET`: whether a running `bazaar up` is looked for."""

    AUTO = "auto"
    ENVIRONMENT = "environment"
    """Never a running `up`: the environment's databases, else the embedded default (the
    processes `up` starts are told so: their environment is complete)."""


NOT_COMPARED = {f"{PREFIX}DATA_DIR", f"{PREFIX}TARGET", f"{PREFIX}ENV_FILE"}
"""The caller's variables that are no setting a running `up` could set aside."""


@dataclass(frozen=True)
class Target:
    source: Source
    folder: Path
    """The `up` folder, or the data dir."""
    settings: Settings
    set_aside: tuple[str, ...] = ()
    """The caller's `BAZAAR_*` variables that differ from a running `up`'s own: not used."""

    def describe(self) -> str:
        """What a person reads on standard error: where, and which servers."""
        where = _shown(self.folder)
        servers = ", ".join(_servers(self.settings.platform, named=self.source is not Source.UP))
        if self.source is Source.UP:
            return f"Using the running `bazaar up` at {where} ({servers})"
        if self.source is Source.ENVIRONMENT:
            return f"Using the databases the environment names ({servers})"
        return f"Using the embedded default under {where}" + (f" ({servers})" if servers else "")


def choose_target(environ: Mapping[str, str]) -> Target:
    """The target and its settings for a command run in `environ`; a bad setting raises
    `SettingsError` naming the variable."""
    env = Env(dict(environ))
    finding = env.text("TARGET", Finding.AUTO).lower()
    if finding not in set(Finding):
        choices = " or ".join(Finding)
        raise SettingsError("TARGET", f"expected {choices}, got {finding!r}")
    data_dir = read_data_dir(env)
    if finding == Finding.AUTO:
        from bazaar.runtime.cluster.folder import Folder
        from bazaar.runtime.cluster.status import tools_environment

        folder = Folder(data_dir)
        running = tools_environment(folder)
        if running is not None:
            set_aside = sorted(
                name
                for name, value in environ.items()
                if name.startswith(PREFIX)
                and name not in NOT_COMPARED
                and value.strip()
                and running.get(name) != value
            )
            return Target(Source.UP, folder.root, Settings.from_env(running), tuple(set_aside))
    settings = Settings.from_env(environ)
    source = Source.EMBEDDED if settings.platform.embedded else Source.ENVIRONMENT
    return Target(source, data_dir, settings)


def _servers(platform: PlatformSettings, *, named: bool) -> list[str]:
    """Each server with its URL (password masked), labelled by its variable when `named`."""
    found = []
    if platform.database_url:
        text = f"{'BAZAAR_DATABASE_URL' if named else 'PostgreSQL'} {masked(platform.database_url)}"
        extra = [
            f"{len(urls)} {what}"
            for what, urls in (
                ("replica(s)", platform.replica_urls),
                ("order shard server(s)", platform.order_shard_urls),
            )
            if urls
        ]
        found.append(text + "".join(f" + {part}" for part in extra))
    for label, name, url in (
        ("Redis", "REDIS_URL", platform.redis_url),
        ("RabbitMQ", "BROKER_URL", platform.broker_url),
    ):
        if url:
            found.append(f"{PREFIX + name if named else label} {masked(url)}")
    return found


def _shown(path: Path) -> str:
    """`path` relative to the working directory when under it, as a person typed it."""
    try:
        return str(path.relative_to(Path.cwd())) or "."
    except ValueError:
        return str(path)
