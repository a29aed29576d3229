"""What `bazaar up` takes from the caller's `BAZAAR_*` settings: read once by the command line
and passed down."""

from collections.abc import Mapping
from dataclasses import dataclass

from bazaar.platform.settings import PREFIX, Env, read_data_dir
from bazaar.runtime.cluster.folder import COMPLETE, Folder


@dataclass(frozen=True)
class UpSettings:
    folder: Folder
    database_url: str | None
    """The caller's PostgreSQL primary (its replicas in `BAZAAR_REPLICA_URLS`); None when
    `up` runs its own."""
    redis_url: str | None
    smtp_url: str | None
    broker_url: str | None
    """Each the caller's server; None when `up` runs its own."""
    passed_on: Mapping[str, str]
    """Every `BAZAAR_*` variable the caller set, as set: `up` hands them to its processes,
    under those it decides itself (the data dir, the servers it runs, the shards). Each
    process checks them, as it checks its own. Not those of `COMPLETE`: the processes get an
    environment complete without a `.env` file (read by this command already)."""

    @classmethod
    def from_env(cls, env: Env) -> "UpSettings":
        return cls(
            folder=Folder(read_data_dir(env)),
            database_url=env.raw("DATABASE_URL"),
            redis_url=env.raw("REDIS_URL"),
            smtp_url=env.raw("SMTP_URL"),
            broker_url=env.raw("BROKER_URL"),
            # an empty variable is an unset one, as the settings read it
            passed_on={
                name: value
                for name, value in env.values.items()
                if name.startswith(PREFIX) and value.strip() and name not in COMPLETE
            },
        )
