"""Identity's parts for a process: routes, schema and the users an admin creates."""

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bazaar.identity import api, handlers, models
from bazaar.identity.service import Passwords
from bazaar.identity.settings import IdentitySettings
from bazaar.platform.auth import TokenIssuer
from bazaar.platform.db import Database
from bazaar.platform.migrations import ServiceSchema
from bazaar.platform.parts import ServiceParts
from bazaar.platform.ratelimit import RateLimiter
from bazaar.platform.web import service_router

SCHEMA = ServiceSchema("bazaar.identity", models.Base.metadata)


def passwords(settings: IdentitySettings) -> Passwords:
    return Passwords(settings.argon2_time_cost, settings.argon2_memory_kib)


def build(
    db: Database,
    issuer: TokenIssuer,
    limiter: RateLimiter,
    settings: IdentitySettings,
    public_keys: list[Ed25519PublicKey],
) -> ServiceParts:
    provided = api.dependencies(db, passwords(settings), issuer, limiter, settings, public_keys)
    router = service_router(api.CONTROLLERS, provided)
    return ServiceParts("identity", SCHEMA, [db], router, subscriptions=handlers.subscriptions())
