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

    def number(
        self, name: str, default: float, *, minimum: float = 0.0, maximum: float | None = None
    ) -> float:
        raw = self.raw(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(name, f"expected a number, got {raw!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"{minimum:g}..{maximum:g}" if maximum is not None else f">= {minimum}"
            raise SettingsError(name, f"expected a number in {bound}, got {value}")
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


class StandardSettingError(SettingsError):
    """A standard variable (not `BAZAAR_*`, such as OpenTelemetry's) has a bad value."""

    def __init__(self, variable: str, problem: str) -> None:
        ValueError.__init__(self, f"{variable}: {problem}")
        self.variable = variable


TRACES_PATH = "/v1/traces"
_SAMPLERS = {
    "always_on": "1",
    "always_off": "0",
    "traceidratio": None,
    "parentbased_always_on": "1",
    "parentbased_always_off": "0",
    "parentbased_traceidratio": None,
}


@dataclass(frozen=True)
class TracingSettings:
    """Where spans go (OTLP over HTTP/protobuf) and which share of traces is kept; no endpoint
    is no tracing at all (`platform/tracing.py`).

    `endpoint`, the collector's traces URL: `BAZAAR_OTLP_ENDPOINT` or the standard
    `OTEL_EXPORTER_OTLP_ENDPOINT` (a base URL, `/v1/traces` appended), else
    `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as it is; `OTEL_SDK_DISABLED=true` or
    `OTEL_TRACES_EXPORTER=none` switch it off. `sample_ratio`, the share of the traces that
    start here which are kept (a trace begun upstream keeps its caller's decision):
    `BAZAAR_TRACE_SAMPLE_RATIO`, else the standard `OTEL_TRACES_SAMPLER` (always parent-based
    here: `traceidratio` is `parentbased_traceidratio`) with `OTEL_TRACES_SAMPLER_ARG`.
    """

    endpoint: str | None = None
    sample_ratio: float = 1.0

    @classmethod
    def from_env(cls, env: Env) -> "TracingSettings":
        standard = env.values
        disabled = standard.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
        if disabled or standard.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
            return cls()
        endpoint = env.url("OTLP_ENDPOINT", ("http", "https"))
        if endpoint is None and (base := standard.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()):
            endpoint = _standard_url("OTEL_EXPORTER_OTLP_ENDPOINT", base)
        if endpoint is not None and not endpoint.rstrip("/").endswith(TRACES_PATH):
            endpoint = endpoint.rstrip("/") + TRACES_PATH
        if endpoint is None and (url := standard.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")):
            endpoint = _standard_url("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url.strip())
        return cls(endpoint=endpoint, sample_ratio=_sample_ratio(env))


def _standard_url(variable: str, url: str) -> str:
    if urlsplit(url).scheme not in ("http", "https"):
        raise StandardSettingError(variable, f"expected an http or https URL, got {url!r}")
    return url


def _sample_ratio(env: Env) -> float:
    if env.raw("TRACE_SAMPLE_RATIO") is not None:
        return env.number("TRACE_SAMPLE_RATIO", 1.0, maximum=1.0)
    sampler = env.values.get("OTEL_TRACES_SAMPLER", "").strip().lower() or "parentbased_always_on"
    if sampler not in _SAMPLERS:
        raise StandardSettingError(
            "OTEL_TRACES_SAMPLER", f"expected one of {', '.join(_SAMPLERS)}, got {sampler!r}"
        )
    raw = _SAMPLERS[sampler] or env.values.get("OTEL_TRACES_SAMPLER_ARG", "").strip() or "1"
    try:
        ratio = float(raw)
    except ValueError:
        ratio = -1.0
    if not 0 <= ratio <= 1:
        raise StandardSettingError("OTEL_TRACES_SAMPLER_ARG", f"expected 0..1, got {raw!r}")
    return ratio


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
    tracing: TracingSettings = field(default_factory=TracingSettings)

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
            tracing=TracingSettings.from_env(env),
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
