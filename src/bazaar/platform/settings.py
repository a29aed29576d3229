"""Settings read once from `BAZAAR_*` environment variables into frozen objects.

Nothing else in the code reads `os.environ`: the runtime reads the settings at start and passes
them down. A bad value fails at start with a `SettingsError` that names the variable.
"""

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from bazaar.platform.shards import ShardMap

PREFIX = "BAZAAR_"


class SettingsError(ValueError):
    """A `BAZAAR_*` variable has a value that cannot be used."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{PREFIX}{name}: {problem}")
        self.variable = PREFIX + name


@dataclass(frozen=True)
class Env:
    """Typed access to the `BAZAAR_*` variables of one environment."""

    values: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    def raw(self, name: str) -> str | None:
        value = self.values.get(PREFIX + name)
        return value.strip() if value is not None and value.strip() else None

    def text(self, name: str, default: str) -> str:
        return self.raw(name) or default

    def optional_text(self, name: str) -> str | None:
        return self.raw(name)

    def integer(
        self, name: str, default: int, *, minimum: int = 0, maximum: int | None = None
    ) -> int:
        raw = self.raw(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(name, f"expected an integer, got {raw!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
            raise SettingsError(name, f"expected an integer in {bound}, got {value}")
        return value

    def number(self, name: str, default: float, *, minimum: float = 0.0) -> float:
        raw = self.raw(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(name, f"expected a number, got {raw!r}") from None
        if value < minimum:
            raise SettingsError(name, f"expected a number >= {minimum}, got {value}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        raw = self.raw(name)
        if raw is None:
            return default
        lowered = raw.lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise SettingsError(name, f"expected true or false, got {raw!r}")

    def url(self, name: str, schemes: tuple[str, ...]) -> str | None:
        raw = self.raw(name)
        if raw is not None:
            check_url(name, raw, schemes)
        return raw

    def urls(self, name: str, schemes: tuple[str, ...]) -> tuple[str, ...]:
        raw = self.raw(name)
        if raw is None:
            return ()
        urls = tuple(part.strip() for part in raw.split(",") if part.strip())
        for url in urls:
            check_url(name, url, schemes)
        return urls


def masked(url: str) -> str:
    """`url` without its password (`postgresql://bazaar:***@host/db`), for a person to read."""
    return _PASSWORD.sub(r"\1***@", url)


_PASSWORD = re.compile(r"(//[^/@:]*:)[^/@]*@")


def check_url(name: str, url: str, schemes: tuple[str, ...]) -> None:
    try:
        parts = urlsplit(url)
    except ValueError as error:
        raise SettingsError(name, f"not a URL ({error})") from None
    scheme = parts.scheme.split("+")[0]
    if scheme not in schemes:
        raise SettingsError(name, f"expected a URL with scheme {' or '.join(schemes)}, got {url!r}")


@dataclass(frozen=True)
class PlatformSettings:
    """Where the data lives and which servers, if any, stand behind the ports.

    `order_shard_map` comes from `BAZAAR_ORDER_SHARD_MAP`: comma-separated ranges of the 256
    virtual shards and the index of the order shard database holding them (`0-127=0,128-255=1`;
    `7=1` names one virtual shard). Every virtual shard appears once, every database gets at
    least one. Unset, contiguous ranges are spread evenly over the databases.
    """

    data_dir: Path
    database_url: str | None
    database_pooler: str | None
    """`pgbouncer` when the database URLs name a PgBouncer in transaction pooling (the
    engines then use no server-side prepared statement twice), None when they name the
    servers themselves."""
    replica_urls: tuple[str, ...]
    replica_max_lag: float
    order_shard_urls: tuple[str, ...]
    order_shards: int
    order_shard_map: ShardMap
    redis_url: str | None
    broker_url: str | None
    broker_prefix: str
    """Every exchange and queue name starts with it: several Bazaars can share one broker."""
    smtp_url: str | None
    jwt_private_key: str | None
    """PEM: identity's token-signing key; never needed, nor read, by any other process."""
    jwt_public_keys: str | None
    """PEM, one or more public keys: every key whose tokens are valid (two while rotating)."""
    log_level: str
    log_json: bool

    @classmethod
    def from_env(cls, env: Env) -> "PlatformSettings":
        shard_urls = env.urls("ORDER_SHARD_URLS", ("postgresql",))
        level = env.text("LOG_LEVEL", "info").lower()
        if level not in {"debug", "info", "warning", "error"}:
            raise SettingsError(
                "LOG_LEVEL", f"expected debug, info, warning or error, got {level!r}"
            )
        order_shards = len(shard_urls) or env.integer("ORDER_SHARDS", 2, minimum=1, maximum=256)
        return cls(
            data_dir=read_data_dir(env),
            database_url=env.url("DATABASE_URL", ("postgresql",)),
            database_pooler=_database_pooler(env),
            replica_urls=env.urls("REPLICA_URLS", ("postgresql",)),
            replica_max_lag=env.number("REPLICA_MAX_LAG", 0.5),
            order_shard_urls=shard_urls,
            order_shards=order_shards,
            order_shard_map=_shard_map(env, order_shards),
            redis_url=env.url("REDIS_URL", ("redis", "rediss")),
            broker_url=env.url("BROKER_URL", ("amqp", "amqps")),
            broker_prefix=_broker_prefix(env.text("BROKER_PREFIX", "bazaar")),
            smtp_url=env.url("SMTP_URL", ("smtp", "smtps")),
            jwt_private_key=env.optional_text("JWT_PRIVATE_KEY"),
            jwt_public_keys=env.optional_text("JWT_PUBLIC_KEYS"),
            log_level=level,
            log_json=env.flag("LOG_JSON", True),
        )

    @property
    def embedded(self) -> bool:
        return self.database_url is None


def read_data_dir(env: Env) -> Path:
    """`BAZAAR_DATA_DIR`, resolved: the embedded databases, the signing key, and the folders of
    `bazaar up`, `bazaar bench` and `bazaar chaos` (`.bazaar` in the working directory)."""
    return Path(env.text("DATA_DIR", ".bazaar")).resolve()


def _shard_map(env: Env, databases: int) -> ShardMap:
    raw = env.raw("ORDER_SHARD_MAP")
    try:
        return ShardMap.parse(raw, databases) if raw else ShardMap(databases)
    except ValueError as error:
        counted = (
            "BAZAAR_ORDER_SHARD_URLS" if env.raw("ORDER_SHARD_URLS") else "BAZAAR_ORDER_SHARDS"
        )
        raise SettingsError("ORDER_SHARD_MAP", f"{error}; {counted} gives {databases}") from None


DATABASE_POOLERS = ("pgbouncer",)


def _database_pooler(env: Env) -> str | None:
    pooler = env.raw("DATABASE_POOLER")
    if pooler is None or pooler.lower() == "none":
        return None
    if pooler.lower() not in DATABASE_POOLERS:
        raise SettingsError("DATABASE_POOLER", f"expected none or pgbouncer, got {pooler!r}")
    return pooler.lower()


def _broker_prefix(prefix: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", prefix):
        raise SettingsError("BROKER_PREFIX", f"letters, digits, '.', '-', '_': got {prefix!r}")
    return prefix
