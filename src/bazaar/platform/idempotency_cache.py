"""The shared fast path of `Idempotency-Key` on Redis: replays and in-flight duplicates answered
without a database round trip, on whichever instance they arrive.

The database record stays the source of truth: Redis only ever holds a copy of it (a claim
while the first request runs, then its stored response). Every call goes through the cache's
circuit breaker, which answers "nothing there" while Redis is unavailable; the caller then
takes the database path, so an outage or a loss of Redis data costs round trips, never a wrong
answer.
"""

import hashlib
from dataclasses import dataclass
from datetime import timedelta

from cashews import Cache

KEPT_FOR = timedelta(hours=24)
"""How long a stored response stays in Redis (the contract keeps keys at least a day)."""


@dataclass(frozen=True)
class Known:
    """What Redis knows of a key: its request's fingerprint, and its response once stored."""

    fingerprint: str
    status: int | None = None
    body: bytes | None = None

    @property
    def in_flight(self) -> bool:
        return self.status is None


class SharedClaims:
    """Claims and stored responses of idempotency keys, shared by every instance on Redis."""

    def __init__(self, cache: Cache, claim_ttl: timedelta) -> None:
        self.cache = cache
        self.claim_ttl = claim_ttl.total_seconds()

    async def known(self, scope: str, key: str) -> Known | None:
        value = await self.cache.get(_redis_key(scope, key))
        # a value of another shape (a newer or older release) is as good as none
        return Known(*value) if isinstance(value, tuple) else None

    async def claim(self, scope: str, key: str, fingerprint: str) -> bool:
        """Claim the key for a first request (`SET NX` with a TTL); False when it is taken, or
        when Redis cannot say."""
        return bool(
            await self.cache.set(
                _redis_key(scope, key), (fingerprint,), expire=self.claim_ttl, exist=False
            )
        )

    async def store(self, scope: str, key: str, fingerprint: str, status: int, body: bytes) -> None:
        """Copy a committed response to Redis, replacing the claim."""
        value = (fingerprint, status, body)
        await self.cache.set(_redis_key(scope, key), value, expire=KEPT_FOR.total_seconds())

    async def release(self, scope: str, key: str) -> None:
        await self.cache.delete(_redis_key(scope, key))


def _redis_key(scope: str, key: str) -> str:
    # The key is the client's (up to 255 characters of anything): a digest keeps it short.
    return f"idempotency:{scope}:{hashlib.sha256(key.encode()).hexdigest()}"
