"""Rate limiting with `limits` (async API): in memory here, Redis when one is configured.

On Redis the counters are shared by every instance. A limiter that cannot reach Redis lets
the request through (fails open, with a warning): an outage of the counters must not lock
every customer out, nor make a login wait.
"""

import asyncio
import time

from limits import parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from bazaar.platform.errors import RateLimited
from bazaar.platform.observability import log

REDIS_TIMEOUT = 0.2
"""Seconds one call to Redis may take before the limiter gives up on it and allows."""


class RateLimiter:
    def __init__(self, redis_url: str | None = None, key_prefix: str = "bazaar:limits") -> None:
        if redis_url:
            storage = storage_from_string(
                f"async+{redis_url}",
                implementation="redispy",
                key_prefix=key_prefix,
                socket_timeout=REDIS_TIMEOUT,
                socket_connect_timeout=REDIS_TIMEOUT,
            )
        else:
            storage = storage_from_string("async+memory://")
        self._shared = bool(redis_url)
        self._limiter = MovingWindowRateLimiter(storage)

    async def check(self, rate: str, *identifiers: str) -> None:
        """Raise RateLimited when `identifiers` have used up `rate` (e.g. '5/minute')."""
        limit = parse(rate)
        try:
            async with asyncio.timeout(self._timeout):
                allowed = await self._limiter.test(limit, *identifiers)
                if allowed:
                    return
                reset_at, _remaining = await self._limiter.get_window_stats(limit, *identifiers)
        except Exception as error:
            self._failed_open("check", error)
            return
        raise RateLimited(
            retry_after=int(reset_at - time.time()) + 1,
            detail="Too many attempts; try again later",
        )

    async def hit(self, rate: str, *identifiers: str) -> bool:
        """Count one use; False when the limit was already reached."""
        try:
            async with asyncio.timeout(self._timeout):
                return await self._limiter.hit(parse(rate), *identifiers)
        except Exception as error:
            self._failed_open("hit", error)
            return True

    async def reset(self) -> None:
        await self._limiter.storage.reset()

    @property
    def _timeout(self) -> float | None:
        return REDIS_TIMEOUT * 2 if self._shared else None

    def _failed_open(self, operation: str, error: Exception) -> None:
        if not self._shared:
            raise error
        log.warning("rate_limit_unavailable", operation=operation, error=repr(error))
