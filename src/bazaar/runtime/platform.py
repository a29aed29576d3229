"""The platform's adapters chosen by the settings: embedded (SQLite, in-process cache and bus)
unless a server is named."""

from dataclasses import dataclass, field

from cashews import Cache
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bazaar.platform.auth import TokenVerifier
from bazaar.platform.bus import EventBus
from bazaar.platform.cache import RedisCache, create_cache
from bazaar.platform.db import Database
from bazaar.platform.edge_cache import ResponseCache
from bazaar.platform.idempotency import Idempotency
from bazaar.platform.in_process_bus import InProcessBus
from bazaar.platform.keys import (
    KEY_FILE,
    PUBLIC_KEY_FILE,
    key_id,
    load_or_create_key,
    parse_private_key,
    parse_public_keys,
)
from bazaar.platform.postgres import (
    PoolSettings,
    postgres_database,
    replica_url,
    server_of,
    server_problem,
    service_url,
)
from bazaar.platform.rabbitmq import RabbitMQBus
from bazaar.platform.ratelimit import RateLimiter
from bazaar.platform.replicas import SharedWritePositions
from bazaar.platform.settings import PlatformSettings, SettingsError
from bazaar.platform.shards import ShardedDatabase
from bazaar.platform.sqlite import sqlite_database
from bazaar.runtime.services import SERVICE_DATABASES


@dataclass
class Platform:
    settings: PlatformSettings
    databases: dict[str, Database]
    orders: ShardedDatabase
    bus: EventBus
    cache: Cache
    limiter: RateLimiter
    signing_key: Ed25519PrivateKey | None
    """Identity's private key: loaded only where identity runs (see `token_keys`)."""
    public_keys: list[Ed25519PublicKey]
    response_cache: ResponseCache = field(default_factory=ResponseCache)
    verifier: TokenVerifier = field(init=False)
    idempotency: Idempotency = field(init=False)

    def __post_init__(self) -> None:
        self.verifier = TokenVerifier(self.public_keys)
        # Redis shares claims and stored responses among instances; in one process the
        # database answers as fast, and the in-process cache stays for catalog pages.
        shared = self.cache if isinstance(self.cache, RedisCache) else None
        self.idempotency = Idempotency(shared)

    def all_databases(self) -> list[Database]:
        return [*self.databases.values(), *self.orders.shards]

    async def cache_problem(self, *, at_start: bool = False) -> str | None:
        """None while the shared cache answers (or there is none: the process's own memory),
        else what is wrong; `at_start`, waiting a moment for a server still starting."""
        if not isinstance(self.cache, RedisCache):
            return None
        return await (self.cache.problem_at_start() if at_start else self.cache.problem())

    async def close(self) -> None:
        for db in self.all_databases():
            await db.dispose()
        await self.cache.close()


def build_platform(
    settings: PlatformSettings,
    pool: PoolSettings | None = None,
    consumer_concurrency: int = 16,
    *,
    signs: bool = True,
) -> Platform:
    """The adapters `settings` names; `pool` sizes each PostgreSQL pool and
    `consumer_concurrency` bounds the broker's handlers running at once; `signs` when the
    process runs identity, the only one that may hold the token-signing key."""
    if settings.replica_urls and settings.embedded:
        raise SettingsError("REPLICA_URLS", "needs BAZAAR_DATABASE_URL (the primary) as well")
    cache = create_cache(settings.redis_url)
    databases, shards = (
        _sqlite_databases(settings)
        if settings.embedded
        else _postgres_databases(settings, cache, pool)
    )
    signing_key, public_keys = token_keys(settings, signs=signs)
    return Platform(
        settings=settings,
        databases=databases,
        orders=ShardedDatabase(shards, settings.order_shard_map),
        bus=RabbitMQBus(
            settings.broker_url, prefix=settings.broker_prefix, concurrency=consumer_concurrency
        )
        if settings.broker_url
        else InProcessBus(stores=[*databases.values(), *shards]),
        cache=cache,
        limiter=RateLimiter(settings.redis_url),
        signing_key=signing_key,
        public_keys=public_keys,
    )


def token_keys(
    settings: PlatformSettings, *, signs: bool
) -> tuple[Ed25519PrivateKey | None, list[Ed25519PublicKey]]:
    """The signing key (only when `signs`) and every public key that verifies tokens.

    The signing key is `BAZAAR_JWT_PRIVATE_KEY`, else the data folder's, made on first use.
    The public keys are the signing key's own and `BAZAAR_JWT_PUBLIC_KEYS` (the keys of a
    rotation); a process that does not sign needs `BAZAAR_JWT_PUBLIC_KEYS`, else reads the
    public key that the data folder's signing key left beside it (`bazaar migrate` and `bazaar
    up` make the pair), never the private key itself.
    """
    try:
        listed = parse_public_keys(settings.jwt_public_keys) if settings.jwt_public_keys else []
    except ValueError as error:
        raise SettingsError("JWT_PUBLIC_KEYS", str(error)) from None
    key_file = settings.data_dir / KEY_FILE
    if not signs:
        if listed:
            return None, listed
        public_file = key_file.with_name(PUBLIC_KEY_FILE)
        if settings.jwt_private_key is None and public_file.exists():
            return None, parse_public_keys(public_file.read_text())
        raise SettingsError(
            "JWT_PUBLIC_KEYS",
            "a process that runs no identity service verifies access tokens with public keys "
            f"only: set it to the PEM public key(s), or run `bazaar migrate` on {settings.data_dir}"
            f" first to make {PUBLIC_KEY_FILE} there",
        )
    if settings.jwt_private_key:
        try:
            signing_key = parse_private_key(settings.jwt_private_key)
        except ValueError as error:
            raise SettingsError("JWT_PRIVATE_KEY", str(error)) from None
    else:
        signing_key = load_or_create_key(key_file)
    own = signing_key.public_key()
    others = [key for key in listed if key_id(key) != key_id(own)]
    return signing_key, [own, *others]


def _sqlite_databases(settings: PlatformSettings) -> tuple[dict[str, Database], list[Database]]:
    data = settings.data_dir
    databases = {name: sqlite_database(name, data / f"{name}.db") for name in SERVICE_DATABASES}
    shards = [
        sqlite_database(f"orders_{index}", data / f"orders_{index}.db")
        for index in range(settings.order_shards)
    ]
    return databases, shards


def _postgres_databases(
    settings: PlatformSettings, cache: Cache, pool: PoolSettings | None
) -> tuple[dict[str, Database], list[Database]]:
    """A database per service on the primary's server, named after the primary's database;
    the order shards where `BAZAAR_ORDER_SHARD_URLS` says, else beside the others. Every
    database on the primary's server reads from the replicas of that server."""
    primary = settings.database_url
    assert primary is not None
    try:
        urls = {name: service_url(primary, name) for name in SERVICE_DATABASES}
        shard_urls = settings.order_shard_urls or tuple(
            service_url(primary, f"orders_{index}") for index in range(settings.order_shards)
        )
    except ValueError as error:
        raise SettingsError("DATABASE_URL", str(error)) from None
    positions = SharedWritePositions(cache) if isinstance(cache, RedisCache) else None

    def database(name: str, url: str) -> Database:
        replicas = [
            replica_url(replica, url)
            for replica in settings.replica_urls
            if server_of(url) == server_of(primary)
        ]
        return postgres_database(
            name,
            url,
            pool,
            replicas,
            max_lag=settings.replica_max_lag,
            positions=positions,
            pooler=settings.database_pooler,
        )

    databases = {name: database(name, url) for name, url in urls.items()}
    shards = [database(f"orders_{index}", url) for index, url in enumerate(shard_urls)]
    return databases, shards


async def require_servers(platform: Platform) -> None:
    """Fail at start, naming the variable, when a PostgreSQL server the settings name does not
    answer (later, an outage is a 503, not a refusal to start)."""
    settings = platform.settings
    if settings.embedded:
        return
    named: dict[str, str] = {}
    for db in platform.databases.values():
        named.setdefault(server_of(db.primary.url), "DATABASE_URL")
    shards = "ORDER_SHARD_URLS" if settings.order_shard_urls else "DATABASE_URL"
    for db in platform.orders.shards:
        named.setdefault(server_of(db.primary.url), shards)
    servers = {server_of(db.primary.url): db.primary.url for db in platform.all_databases()}
    for server, variable in named.items():
        if (problem := await server_problem(servers[server])) is not None:
            raise SettingsError(variable, problem)
    for replica in settings.replica_urls:
        if (problem := await server_problem(replica)) is not None:
            raise SettingsError("REPLICA_URLS", problem)
