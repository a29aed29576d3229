"""Tier (a) of the cache: the hottest public reads answered at the ASGI edge, before routing.

A service puts a response's pre-serialized bytes and ETag here after answering it; the next
identical GET is answered from memory without touching the framework. Entries live at most
`ttl` seconds (the staleness bound, so instances that missed an invalidation still converge)
and are dropped at once when the service changes what they show.

A hot entry is refreshed before it expires (refresh-ahead): once half its life has passed, the
service is asked for it again in the background (`EdgeCache._refresh`), while every request,
the one that found it due included, is still answered from the entry. Without it every hot
entry expired under load: the requests that came meanwhile all went to the service at once,
and under a tenth of a core that burst held every request of the instance for 100 to 170 ms
once a second (`bazaar bench ramp`).

A service may fill the cache on a miss without the framework (`ResponseCache.fill_misses`):
catalog reads a product page into its caches and the edge answers from the entry, as on a hit.
Routing, the dependencies and the response object cost an instance under a quarter of a core
more than the page tier's own lookup; anything the filler does not fill goes on to the app.
"""

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPRequestEvent, Message, Receive, Scope, Send

from bazaar.platform.cache import STALENESS_BOUND
from bazaar.platform.observability import log, record_cache_lookup

REFRESH_SHARE = 0.5
"""The share of an entry's life after which the service is asked for it again (in the
background: no request waits). The page tier behind refreshes a due page in the background
too (catalog/pages.py), so a refresh usually brings the page that tier had read half a bound
earlier, and the next one the page it has just read again: pages live at most the bound, and
a hot one is never missed. Measured under `bazaar bench ramp` against waiting in the page
tier for one read per cycle at three quarters of the bound: the latter polled the shared
cache for the page another instance was reading, and its p99 at 100 req/s was twice as
high."""


Filler = Callable[[str, bytes], Awaitable[bool]]
"""Given a GET's path and query string, puts its response in the cache; False when it did
not (the app answers then)."""


@dataclass(frozen=True, slots=True)
class CachedResponse:
    body: bytes
    etag: str
    cache_control: str
    route: str
    expires_at: float
    refresh_at: float
    """When one request goes on to the service to refresh it (`answer`)."""


class ResponseCache:
    def __init__(self, ttl: float = STALENESS_BOUND, max_entries: int = 50_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, CachedResponse] = {}
        self._fillers: dict[str, Filler] = {}

    def fill_misses(self, prefix: str, filler: Filler) -> None:
        """Ask `filler` first about a miss of a GET whose path begins with `prefix` (in place
        of the one asked before, if any)."""
        self._fillers[prefix] = filler

    async def fill(self, path: str, query_string: bytes) -> bool:
        """Whether a filler put the GET's response in the cache. A filler that fails is as
        one that did not fill: the app then answers, its failure included, as it would."""
        for prefix, filler in self._fillers.items():
            if path.startswith(prefix):
                try:
                    return await filler(path, query_string)
                except Exception:
                    return False
        return False

    def put(
        self,
        key: str,
        body: bytes,
        etag: str,
        cache_control: str,
        route: str,
        age: float = 0.0,
    ) -> None:
        """Keep a response for the rest of the bound: `ttl` less the `age` of what it shows."""
        if age >= self.ttl:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.pop(next(iter(self._entries)))
        now, life = time.monotonic(), self.ttl - age
        self._entries[key] = CachedResponse(
            body, etag, cache_control, route, now + life, now + life * REFRESH_SHARE
        )

    def get(self, key: str) -> CachedResponse | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at < time.monotonic():
            self._entries.pop(key, None)
            return None
        return entry

    def fresh(self, key: str) -> CachedResponse | None:
        """The entry while it is not due for a refresh."""
        entry = self.get(key)
        return entry if entry is not None and time.monotonic() < entry.refresh_at else None

    def answer(self, key: str) -> tuple[CachedResponse | None, bool]:
        """The entry to answer a request with (None: none), and whether this request is the
        one that has it refreshed (its next refresh is then due halfway to its expiry, in
        case this one brings nothing newer)."""
        entry = self.get(key)
        if entry is None:
            return None, False
        now = time.monotonic()
        if now < entry.refresh_at:
            return entry, False
        later = now + (entry.expires_at - now) * REFRESH_SHARE
        self._entries[key] = dataclasses.replace(entry, refresh_at=later)
        return entry, True

    def invalidate(self, key: str) -> None:
        self._entries.pop(key, None)

    def invalidate_prefix(self, prefix: str) -> None:
        for key in [key for key in self._entries if key.startswith(prefix)]:
            self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()


def cache_key(path: str, query_string: bytes = b"") -> str:
    return f"{path}?{query_string.decode('latin-1')}" if query_string else path


class EdgeCache:
    """ASGI layer answering GETs that are in the `ResponseCache`; everything else passes."""

    def __init__(self, app: ASGIApp, cache: ResponseCache) -> None:
        self.app = app
        self.cache = cache
        self._refreshing: set[asyncio.Task[None]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        key = cache_key(scope["path"], scope["query_string"])
        entry, due = self.cache.answer(key)
        if entry is None and await self.cache.fill(scope["path"], scope["query_string"]):
            entry, due = self.cache.answer(key)
        if entry is None:
            await self.app(scope, receive, send)
            return
        if due:
            self._refresh(scope)
        record_cache_lookup("edge", hit=True)
        scope["path_template"] = entry.route
        etag = entry.etag.encode()
        headers = [(b"etag", etag), (b"cache-control", entry.cache_control.encode())]
        if_none_match = next((v for k, v in scope["headers"] if k == b"if-none-match"), None)
        if if_none_match is not None and _matches(if_none_match, etag):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        headers.append((b"content-type", b"application/json"))
        headers.append((b"content-length", str(len(entry.body)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": entry.body, "more_body": False})

    def _refresh(self, scope: Scope) -> None:
        """Ask the service for the entry's response again, in the background, as a caching
        proxy's background update does (nginx's `proxy_cache_background_update`): the
        service puts what it answers in the cache, and the request that found the entry due
        is answered from it at once, like every other. Anonymous and unconditional: what a
        public entry holds is the same for everyone."""
        headers = [
            (name, value)
            for name, value in scope["headers"]
            if name not in (b"authorization", b"cookie", b"if-none-match")
        ]
        again = cast(Scope, {**scope, "headers": headers, "state": {}})
        refresh = asyncio.ensure_future(self.app(again, _no_body, _discard))
        self._refreshing.add(refresh)
        refresh.add_done_callback(self._refreshed)

    def _refreshed(self, refresh: "asyncio.Task[None]") -> None:
        self._refreshing.discard(refresh)
        if not refresh.cancelled() and (error := refresh.exception()) is not None:
            log.warning("edge_refresh_failed", error=repr(error))


async def _no_body() -> HTTPRequestEvent:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _discard(message: Message) -> None:
    """The refresh's answer is in the cache already; nobody reads it."""


def _matches(if_none_match: bytes, etag: bytes) -> bool:
    """Whether `If-None-Match` names `etag` or is `*` (weak comparison, as RFC 9110 says)."""
    if if_none_match.strip() == b"*":
        return True
    return any(tag.strip().removeprefix(b"W/") == etag for tag in if_none_match.split(b","))
