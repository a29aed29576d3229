"""All settings of a process, read once at start from the environment."""

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from bazaar.catalog.settings import CatalogSettings
from bazaar.identity.settings import IdentitySettings
from bazaar.notifications.settings import NotificationsSettings
from bazaar.orders.settings import OrdersSettings
from bazaar.payments.settings import PaymentsSettings
from bazaar.platform.postgres import PoolSettings
from bazaar.platform.settings import Env, PlatformSettings, SettingsError


class ProcessKind(Enum):
    """What a process does, which decides its defaults (see `ProcessSettings`)."""

    DEV = "dev"
    """Every service's routes, consumers, relay and loops in one process (`bazaar dev`)."""
    SERVE = "serve"
    """One service's HTTP API (`bazaar serve`)."""
    WORKER = "worker"
    """One service's outbox relay, consumers and background loops (`bazaar worker`)."""


@dataclass(frozen=True)
class KindDefaults:
    pool: PoolSettings
    consumer_concurrency: int
    relay_poll_interval: float
    """Seconds between the relay's looks at the outbox when no commit woke it: commits in its
    process wake it directly, commits in other processes (the API's) through PostgreSQL's
    NOTIFY (platform/pg_notify.py), so polling is only the fallback."""


DEFAULTS = {
    # Requests and consumers share the pools: consumers may hold at most a fifth of them,
    # so a burst of events cannot starve the requests (which wait at most 1 s, then 503).
    ProcessKind.DEV: KindDefaults(PoolSettings(size=10, overflow=10, timeout=1.0), 4, 1.0),
    ProcessKind.SERVE: KindDefaults(PoolSettings(size=10, overflow=10, timeout=1.0), 4, 1.0),
    # No request waits on a worker: a handler may wait longer for a connection than a
    # request would, rather than fail and be redelivered.
    ProcessKind.WORKER: KindDefaults(PoolSettings(size=5, overflow=5, timeout=5.0), 8, 1.0),
}


@dataclass(frozen=True)
class ProcessSettings:
    kind: ProcessKind
    pool: PoolSettings
    """Each PostgreSQL database's pool in this process (`BAZAAR_DB_POOL_SIZE`,
    `BAZAAR_DB_MAX_OVERFLOW`, `BAZAAR_DB_POOL_TIMEOUT`)."""
    consumer_concurrency: int
    """Event handlers running at once in this process, all consumers together
    (`BAZAAR_CONSUMER_CONCURRENCY`): below the pool's capacity, so handlers cannot take every
    connection."""
    relay_poll_interval: float
    """See `KindDefaults.relay_poll_interval` (`BAZAAR_RELAY_POLL_INTERVAL`)."""

    @classmethod
    def from_env(cls, env: Env, kind: ProcessKind) -> "ProcessSettings":
        defaults = DEFAULTS[kind]
        pool = PoolSettings(
            size=env.integer("DB_POOL_SIZE", defaults.pool.size, minimum=1, maximum=500),
            overflow=env.integer("DB_MAX_OVERFLOW", defaults.pool.overflow, maximum=500),
            timeout=env.number("DB_POOL_TIMEOUT", defaults.pool.timeout, minimum=0.01),
        )
        concurrency = env.integer(
            "CONSUMER_CONCURRENCY", defaults.consumer_concurrency, minimum=1, maximum=1000
        )
        if concurrency >= pool.capacity:
            raise SettingsError(
                "CONSUMER_CONCURRENCY",
                f"{concurrency} must stay below the pool's capacity ({pool.capacity} ="
                " BAZAAR_DB_POOL_SIZE + BAZAAR_DB_MAX_OVERFLOW), or handlers could hold every"
                " connection",
            )
        return cls(
            kind=kind,
            pool=pool,
            consumer_concurrency=concurrency,
            relay_poll_interval=env.number(
                "RELAY_POLL_INTERVAL", defaults.relay_poll_interval, minimum=0.01
            ),
        )


@dataclass(frozen=True)
class Settings:
    platform: PlatformSettings
    identity: IdentitySettings
    payments: PaymentsSettings
    catalog: CatalogSettings
    notifications: NotificationsSettings
    orders: OrdersSettings
    process: ProcessSettings

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, kind: ProcessKind = ProcessKind.DEV
    ) -> "Settings":
        env = Env(dict(environ)) if environ is not None else Env()
        return cls(
            platform=PlatformSettings.from_env(env),
            identity=IdentitySettings.from_env(env),
            payments=PaymentsSettings.from_env(env),
            catalog=CatalogSettings.from_env(env),
            notifications=NotificationsSettings.from_env(env),
            orders=OrdersSettings.from_env(env),
            process=ProcessSettings.from_env(env, kind),
        )
