"""Identity's parts for a process: routes, schema and the users an admin creates."""

from bazaar.identity import api, models
from bazaar.identity.service import Passwords
from bazaar.identity.settings import IdentitySettings
from bazaar.platform.auth import TokenIssuer
from bazaar.platform.db import Database
from bazaar.platform.migrations import ServiceSchema
from bazaar.platform.parts import ServiceParts
from bazaar.platform.ratelimit import RateLimiter

SCHEMA = ServiceSchema("bazaar.identity", models.Base.metadata)


def passwords(settings: IdentitySettings) -> Passwords:
    return Passwords(settings.argon2_time_cost, settings.argon2_memory_kib)


def build(
    db: Database, issuer: TokenIssuer, limiter: RateLimiter, settings: IdentitySettings
) -> ServiceParts:
    router = api.create_router(db, passwords(settings), issuer, limiter, settings)
    return ServiceParts("identity", SCHEMA, [db], router)
