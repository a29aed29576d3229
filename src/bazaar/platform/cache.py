"""The cache port: cashews, in process by default and Redis when `BAZAAR_REDIS_URL` is set.

Catalog reads are cached for at most `STALENESS_BOUND` seconds and invalidated after each
commit that changes them, so no instance serves a product older than that bound.
"""

from cashews import Cache

from bazaar.platform.observability import record_cache_lookup

STALENESS_BOUND = 1.0


def create_cache(redis_url: str | None) -> Cache:
    cache = Cache()
    if redis_url is None:
        cache.setup("mem://?size=200000")
    else:
        cache.setup(redis_url, client_side=False)
    return cache


def record_lookup(cache_name: str, hit: bool) -> None:
    record_cache_lookup(cache_name, hit=hit)
