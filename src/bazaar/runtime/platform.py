"""The platform's adapters chosen by the settings: embedded (SQLite, in-process cache and bus)
unless a server is named."""

from dataclasses import dataclass, field

from cashews import Cache
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bazaar.platform.auth import TokenVerifier, load_or_create_key, parse_private_key
from bazaar.platform.bus import EventBus, InProcessBus
from bazaar.platform.cache import RedisCache, create_cache
from bazaar.platform.db import Database, sqlite_database
from bazaar.platform.edge_cache import ResponseCache
from bazaar.platform.idempotency import Idempotency
from bazaar.platform.postgres import postgres_database, service_url
from bazaar.platform.rabbitmq import RabbitMQBus
from bazaar.platform.ratelimit import RateLimiter
from bazaar.platform.settings import PlatformSettings, SettingsError
from bazaar.platform.shards import ShardedDatabase, ShardMap

SERVICE_DATABASES = ("identity", "catalog", "payments", "notifications")


@dataclass
class Platform:
    settings: PlatformSettings
    databases: dict[str, Database]
    orders: ShardedDatabase
    bus: EventBus
    cache: Cache
    limiter: RateLimiter
    signing_key: Ed25519PrivateKey
    response_cache: ResponseCache = field(default_factory=ResponseCache)
    verifier: TokenVerifier = field(init=False)
    idempotency: Idempotency = field(init=False)

    def __post_init__(self) -> None:
        self.verifier = TokenVerifier(self.signing_key.public_key())
        # Redis shares claims and stored responses among instances; in one process the
        # database answers as fast, and the in-process cache stays for catalog pages.
        shared = self.cache if isinstance(self.cache, RedisCache) else None
        self.idempotency = Idempotency(shared)

    def all_databases(self) -> list[Database]:
        return [*self.databases.values(), *self.orders.shards]

    async def close(self) -> None:
        for db in self.all_databases():
            await db.dispose()
        await self.cache.close()


def build_platform(settings: PlatformSettings) -> Platform:
    for variable, value in (("REPLICA_URLS", settings.replica_urls),):
        if value:
            raise SettingsError(variable, "is not supported yet: leave it unset")
    data = settings.data_dir
    databases, shards = (
        _sqlite_databases(settings) if settings.embedded else _postgres_databases(settings)
    )
    if settings.jwt_private_key:
        try:
            key = parse_private_key(settings.jwt_private_key)
        except ValueError as error:
            raise SettingsError("JWT_PRIVATE_KEY", str(error)) from None
    else:
        key = load_or_create_key(data / "jwt-ed25519.pem")
    return Platform(
        settings=settings,
        databases=databases,
        orders=ShardedDatabase(shards, ShardMap(len(shards))),
        bus=RabbitMQBus(settings.broker_url) if settings.broker_url else InProcessBus(),
        cache=create_cache(settings.redis_url),
        limiter=RateLimiter(settings.redis_url),
        signing_key=key,
    )


def _sqlite_databases(settings: PlatformSettings) -> tuple[dict[str, Database], list[Database]]:
    data = settings.data_dir
    databases = {name: sqlite_database(name, data / f"{name}.db") for name in SERVICE_DATABASES}
    shards = [
        sqlite_database(f"orders_{index}", data / f"orders_{index}.db")
        for index in range(settings.order_shards)
    ]
    return databases, shards


def _postgres_databases(settings: PlatformSettings) -> tuple[dict[str, Database], list[Database]]:
    """A database per service on the primary's server, named after the primary's database;
    the order shards where `BAZAAR_ORDER_SHARD_URLS` says, else beside the others."""
    primary = settings.database_url
    assert primary is not None
    try:
        databases = {
            name: postgres_database(name, service_url(primary, name)) for name in SERVICE_DATABASES
        }
        shard_urls = settings.order_shard_urls or tuple(
            service_url(primary, f"orders_{index}") for index in range(settings.order_shards)
        )
    except ValueError as error:
        raise SettingsError("DATABASE_URL", str(error)) from None
    shards = [postgres_database(f"orders_{index}", url) for index, url in enumerate(shard_urls)]
    return databases, shards
