"""Rate limiting with `limits` (async API): in memory here, Redis when one is configured."""

import time

from limits import parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from bazaar.platform.errors import RateLimited


class RateLimiter:
    def __init__(self, redis_url: str | None = None) -> None:
        uri = f"async+{redis_url}" if redis_url else "async+memory://"
        self._limiter = MovingWindowRateLimiter(storage_from_string(uri))

    async def check(self, rate: str, *identifiers: str) -> None:
        """Raise RateLimited when `identifiers` have used up `rate` (e.g. '5/minute')."""
        limit = parse(rate)
        if not await self._limiter.test(limit, *identifiers):
            reset_at, _remaining = await self._limiter.get_window_stats(limit, *identifiers)
            raise RateLimited(
                retry_after=int(reset_at - time.time()) + 1,
                detail="Too many attempts; try again later",
            )

    async def hit(self, rate: str, *identifiers: str) -> bool:
        """Count one use; False when the limit was already reached."""
        return await self._limiter.hit(parse(rate), *identifiers)

    async def reset(self) -> None:
        await self._limiter.storage.reset()
