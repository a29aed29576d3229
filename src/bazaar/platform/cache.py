"""The cache port: cashews, in process by default and Redis when `BAZAAR_REDIS_URL` is set.

Catalog reads are cached for at most `STALENESS_BOUND` seconds and invalidated after each
commit that changes them, so no instance serves a product older than that bound. With Redis a
circuit breaker sits under every call: when Redis fails, calls answer "miss" at once and skip
Redis for a while, so reads go to the database instead of waiting on a dead server.

Readiness says 503 when Redis refuses or drops connections, not when a call only timed out: a
process starved of CPU (a saturated instance under its quota) sees every call time out, and
taking each busy instance out of rotation in turn would make a slow moment an outage. The
breaker still sends its reads to the database.
"""

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from cashews import Cache
from cashews.backends.interface import Backend
from cashews.commands import Command
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import TimeoutError as RedisTimeout

from bazaar.platform.observability import log

T = TypeVar("T")

STALENESS_BOUND = 1.0
REDIS_TIMEOUT = 0.2
"""Seconds any one Redis call may take (connect, send, answer) before it counts as failed."""
BREAKER_OPEN_SECONDS = 2.0
"""How long Redis is skipped after a failure before one call tries it again."""
JITTER = 0.05
"""Entries live up to this share less than asked, so entries written together expire apart."""

_MISSING_RESULTS: dict[Command, Any] = {
    Command.SET: False,
    Command.SET_MANY: None,
    Command.DELETE: False,
    Command.DELETE_MANY: None,
    Command.DELETE_MATCH: None,
    Command.EXISTS: False,
    Command.IS_LOCKED: False,
    # No Redis, no other process to share a load with: whoever asks may load.
    Command.SET_LOCK: True,
    Command.UNLOCK: False,
    Command.INCR: None,
    Command.EXPIRE: None,
    Command.GET_EXPIRE: -1,
}


def jittered(ttl: float) -> float:
    """`ttl` shortened by up to `JITTER` of itself: never longer, so never past a bound."""
    return ttl * (1.0 - random.random() * JITTER)


def _is_timeout(error: BaseException) -> bool:
    timeouts = (TimeoutError, RedisTimeout, asyncio.CancelledError)
    return isinstance(error, timeouts) or isinstance(error.__cause__, timeouts)


class CircuitBreaker:
    """Open (skip Redis) for `open_seconds` after a failure; then let calls try again."""

    def __init__(self, open_seconds: float = BREAKER_OPEN_SECONDS) -> None:
        self.open_seconds = open_seconds
        self.open_until = 0.0
        self.last_error = ""
        self.timed_out = False
        """The last failure was a timeout: Redis slow, or this process starved of CPU."""

    @property
    def is_open(self) -> bool:
        return time.monotonic() < self.open_until

    def failed(self, error: BaseException) -> None:
        self.timed_out = _is_timeout(error)
        error = error.__cause__ or error  # cashews wraps redis-py's own, more telling error
        if not self.is_open:
            log.warning("redis_unavailable", error=repr(error), skip_seconds=self.open_seconds)
        self.open_until = time.monotonic() + self.open_seconds
        self.last_error = type(error).__name__

    def succeeded(self) -> None:
        if self.open_until:
            log.info("redis_available")
        self.open_until = 0.0

    async def middleware(
        self,
        call: Callable[..., Awaitable[Any]],
        cmd: Command,
        backend: Backend,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        """A cashews middleware: fail fast and answer as a miss while Redis is unavailable."""
        if cmd is Command.PING:
            return await self._guarded(call, args, kwargs)
        return await self.attempt(lambda: call(*args, **kwargs), self._missing(cmd, args, kwargs))

    async def attempt(self, call: Callable[[], Awaitable[T]], missing: T) -> T:
        """`call()`'s answer; `missing` at once while open, and when it fails."""
        if self.is_open:
            return missing
        try:
            answer: T = await self._guarded(call, (), {})
        except Exception:
            return missing
        return answer

    async def _guarded(
        self, call: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        try:
            async with asyncio.timeout(REDIS_TIMEOUT * 2):
                result = await call(*args, **kwargs)
        except Exception as error:
            self.failed(error)
            raise
        self.succeeded()
        return result

    @staticmethod
    def _missing(cmd: Command, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if cmd is Command.GET:
            return kwargs.get("default")
        if cmd is Command.GET_MANY:
            return tuple(kwargs.get("default") for _ in args)
        return _MISSING_RESULTS.get(cmd)


class RedisCache(Cache):
    """The shared cache on Redis, behind a circuit breaker.

    Besides cashews' calls, `get_text` and `set_text` go straight to redis-py's client, under
    the same breaker and bound: for a lookup every request makes (a caller's write position,
    platform/replicas.py), where cashews' chain of middlewares cost as much of the process as
    the round trip itself. The keys `get_text` is asked for in one pass of the event loop are
    read with one MGET: the requests that arrive together share a round trip and a checkout
    of redis-py's pool, which costs more than the command."""

    def __init__(self, redis_url: str) -> None:
        super().__init__()
        self.breaker = CircuitBreaker()
        options: dict[str, Any] = {
            "socket_timeout": REDIS_TIMEOUT,
            "socket_connect_timeout": REDIS_TIMEOUT,
            "max_connections": 50,
            "health_check_interval": 0,
        }
        self.setup(
            redis_url,
            middlewares=(self.breaker.middleware,),
            client_side=False,
            suppress=False,
            wait_for_connection_timeout=REDIS_TIMEOUT,
            **options,
        )
        pool = BlockingConnectionPool.from_url(redis_url, timeout=REDIS_TIMEOUT, **options)
        self.plain = Redis(connection_pool=pool)
        self._asked: list[tuple[str, asyncio.Future[bytes | str | None]]] = []
        self._reading: set[asyncio.Task[None]] = set()

    async def get_text(self, key: str) -> str | None:
        """The key's value as text (bytes that are not UTF-8 replaced); None when it has
        none, and while Redis is unavailable."""
        loop = asyncio.get_running_loop()
        if not self._asked:  # the first of this pass: the read goes once the pass is over
            loop.call_soon(self._read_asked)
        answer: asyncio.Future[bytes | str | None] = loop.create_future()
        self._asked.append((key, answer))
        value = await answer
        return value.decode(errors="replace") if isinstance(value, bytes) else value

    def _read_asked(self) -> None:
        asked, self._asked = self._asked, []
        reading = asyncio.ensure_future(self._read(asked))
        self._reading.add(reading)
        reading.add_done_callback(self._reading.discard)

    async def _read(self, asked: list[tuple[str, asyncio.Future[bytes | str | None]]]) -> None:
        keys = list(dict.fromkeys(key for key, _answer in asked))
        found: dict[str, bytes | str | None] = {}
        try:
            values = await self.breaker.attempt(lambda: self.plain.mget(keys), None)
            if values is not None:
                found = dict(zip(keys, values, strict=True))
        finally:  # cancelled (the process stops) or not: every waiter gets an answer
            for key, answer in asked:
                if not answer.done():
                    answer.set_result(found.get(key))

    async def set_text(self, key: str, value: str, expire: float) -> None:
        """Set the key for `expire` seconds; nothing while Redis is unavailable."""
        milliseconds = max(1, int(expire * 1000))
        await self.breaker.attempt(lambda: self.plain.set(key, value, px=milliseconds), None)

    async def close(self) -> None:
        await super().close()
        for reading in list(self._reading):
            reading.cancel()
        await self.plain.aclose()

    async def problem(self, *, slow_is_down: bool = False) -> str | None:
        """Why Redis cannot serve now (a readiness check), or None when it answers or is only
        slow to (see the module's docstring) and `slow_is_down` is not asked."""
        if self.breaker.is_open and (slow_is_down or not self.breaker.timed_out):
            return f"redis: unavailable ({self.breaker.last_error})"
        try:
            await self.ping()
        except Exception as error:
            if _is_timeout(error) and not slow_is_down:
                return None
            return f"redis: {type(error).__name__}"
        return None

    async def problem_at_start(self, within: float = 3.0) -> str | None:
        """Like `problem`, but asking again for `within` seconds: a busy machine can be slow to
        take the first connection, and that is not yet a wrong URL."""
        deadline = time.monotonic() + within
        while True:
            self.breaker.open_until = 0.0
            problem = await self.problem(slow_is_down=True)
            if problem is None or time.monotonic() >= deadline:
                return problem
            await asyncio.sleep(0.1)


def create_cache(redis_url: str | None) -> Cache:
    if redis_url is None:
        cache = Cache()
        cache.setup("mem://?size=200000")
        return cache
    return RedisCache(redis_url)
