"""The edge response cache answers repeated GETs from memory, honours ETags and expires."""

import asyncio
import hashlib

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from litestar import Request, Router, get
from litestar.params import FromPath
from litestar.response import Response

from bazaar.platform.auth import TokenVerifier
from bazaar.platform.edge_cache import ResponseCache, cache_key
from bazaar.platform.web import create_app


def app_counting_calls(cache: ResponseCache) -> tuple[object, list[str]]:
    calls: list[str] = []

    @get("/things/{name:str}", sync_to_thread=False)
    def thing(name: FromPath[str], request: Request) -> Response:
        calls.append(name)
        body = f'{{"name": "{name}"}}'.encode()
        etag = f'"{hashlib.sha256(body).hexdigest()[:16]}"'
        cache.put(cache_key(request.url.path), body, etag, "public, max-age=1", "/things/{name}")
        return Response(body, media_type="application/json", headers={"ETag": etag})

    verifier = TokenVerifier([Ed25519PrivateKey.generate().public_key()])
    app = create_app(
        title="t",
        routers=[Router("/", route_handlers=[thing])],
        verifier=verifier,
        response_cache=cache,
    )
    return app, calls


async def test_second_read_is_served_from_memory_with_etag_and_304() -> None:
    cache = ResponseCache(ttl=5)
    app, calls = app_counting_calls(cache)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        first = await c.get("/things/a")
        second = await c.get("/things/a")
        assert first.content == second.content
        assert second.headers["etag"] == first.headers["etag"]
        assert "x-request-id" in second.headers
        not_modified = await c.get("/things/a", headers={"If-None-Match": first.headers["etag"]})
        assert not_modified.status_code == 304 and not_modified.content == b""
        assert calls == ["a"]
        cache.invalidate("/things/a")
        await c.get("/things/a")
        assert calls == ["a", "a"]


async def test_entries_expire_after_the_staleness_bound() -> None:
    cache = ResponseCache(ttl=0.05)
    app, calls = app_counting_calls(cache)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        await c.get("/things/b")
        await asyncio.sleep(0.1)
        await c.get("/things/b")
    assert calls == ["b", "b"]


async def test_a_wildcard_if_none_match_is_304_from_memory_too() -> None:
    cache = ResponseCache(ttl=5)
    app, calls = app_counting_calls(cache)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        assert (await c.get("/things/a")).status_code == 200
        cached = await c.get("/things/a", headers={"If-None-Match": "*"})
        assert cached.status_code == 304 and cached.content == b""
        assert cached.headers["etag"] and cached.headers["x-request-id"]
    assert calls == ["a"]


async def test_a_hot_entry_is_refreshed_by_one_request_while_the_others_are_answered() -> None:
    """Past half its life the service is asked for it again, once, in the background; every
    request is answered from the entry, which the refresh then extends: a hot entry never
    expires."""
    cache = ResponseCache(ttl=0.4)
    app, calls = app_counting_calls(cache)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        await c.get("/things/hot")
        await asyncio.sleep(0.25)  # past the refresh point (0.2 s), before the expiry
        for _ in range(20):
            assert (await c.get("/things/hot")).status_code == 200
        await asyncio.sleep(0.01)  # the refresh runs in the background
        assert calls == ["hot", "hot"]  # the first, and one refresh for the twenty
        for _ in range(8):  # twice the bound, reading all along: never a miss but refreshes
            await asyncio.sleep(0.1)
            await c.get("/things/hot")
        assert 3 <= len(calls) <= 6


async def test_an_entry_due_for_refresh_is_not_fresh_and_its_refresh_is_claimed_once() -> None:
    cache = ResponseCache(ttl=0.4)
    cache.put("/k", b"{}", '"e"', "public", "/k", age=0.1)  # refresh due in half of 0.3 s
    assert cache.fresh("/k") is not None and cache.answer("/k")[1] is False
    await asyncio.sleep(0.2)
    assert cache.get("/k") is not None
    assert cache.fresh("/k") is None
    entry, due = cache.answer("/k")
    assert entry is not None and due  # this request has it refreshed
    entry, due = cache.answer("/k")
    assert entry is not None and not due  # the next ones do not
    entry = cache.get("/k")
    assert entry is not None and entry.refresh_at < entry.expires_at


async def test_a_filler_answers_a_miss_without_the_app() -> None:
    cache = ResponseCache(ttl=5)
    app, calls = app_counting_calls(cache)
    asked: list[tuple[str, bytes]] = []

    async def fill(path: str, query_string: bytes) -> bool:
        asked.append((path, query_string))
        name = path.removeprefix("/things/")
        if name == "unfilled":
            return False
        if name == "broken":
            raise RuntimeError("the database is gone")
        body = f'{{"name": "{name}"}}'.encode()
        cache.put(path, body, '"filled"', "public, max-age=1", "/things/{name}")
        return True

    cache.fill_misses("/things/", fill)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        filled = await c.get("/things/a")
        assert filled.json() == {"name": "a"} and filled.headers["etag"] == '"filled"'
        assert filled.headers["cache-control"] == "public, max-age=1"
        again = await c.get("/things/a", headers={"If-None-Match": '"filled"'})
        assert again.status_code == 304
        assert calls == [] and asked == [("/things/a", b"")]  # the second, a hit
        # not filled, or failing: the app answers
        assert (await c.get("/things/unfilled")).json() == {"name": "unfilled"}
        assert (await c.get("/things/broken")).json() == {"name": "broken"}
        assert calls == ["unfilled", "broken"]
        # a path no filler asked for is not offered
        assert (await c.get("/other")).status_code == 404
        assert [path for path, _query in asked] == [
            "/things/a",
            "/things/unfilled",
            "/things/broken",
        ]
