"""The HTTP edge shared by every service: the app, request ids, metrics, health, content-type
and body-size checks, the current user, a service's router. Errors are in `problems`, their
documentation in `openapi`; what a route is given per request in `unit_of_work`."""

import asyncio
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from litestar import Controller, Litestar, MediaType, Request, Response, Router, get
from litestar.di import NamedDependency, Provide
from litestar.enums import ScopeType
from litestar.openapi.spec import SecurityRequirement
from litestar.response.base import ASGIResponse
from litestar.routes import HTTPRoute
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bazaar.platform.auth import Principal, TokenVerifier
from bazaar.platform.bodies import StrictRequest
from bazaar.platform.edge_cache import EdgeCache, ResponseCache
from bazaar.platform.errors import BadRequest, BazaarError, UnsupportedMediaType
from bazaar.platform.idempotency import Replayed, keep_response
from bazaar.platform.observability import (
    HTTP_LATENCY,
    child_traceparent,
    request_id_var,
    traceparent_var,
)
from bazaar.platform.openapi import JSON_ONLY, Document, openapi_config, published
from bazaar.platform.problems import EXCEPTION_HANDLERS, problem
from bazaar.platform.replicas import reads_follow_writes_of, start_request
from bazaar.platform.tracing import Tracing

MAX_BODY = 1024 * 1024
# Litestar appends the charset itself; twice, a scraper (Go's mime parser) rejects the header.
_METRICS_MEDIA_TYPE = CONTENT_TYPE_LATEST.partition("; charset=")[0]
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

BEARER: list[SecurityRequirement] = [{"bearer": []}]
"""The OpenAPI security of a route that needs an access token."""
CurrentUser = NamedDependency[Principal]
"""A route parameter `user: CurrentUser` requires a valid access token (else 401). The
dependencies of a route that has none get None as `user` (see `unit_of_work`)."""
_PRINCIPAL = "bazaar_principal"
"""Where a request keeps its verified user, so that its token is verified once."""

ReadinessCheck = Callable[[], Awaitable[str | None]]
"""Returns None when its dependency answers, else what is wrong."""


class BackgroundCheck:
    """Readiness checks of the servers, answered from their last result and run again in the
    background at most every `max_age` seconds (bounded by `timeout`).

    A load balancer asks every half second; under load, checks that waited in line for pool
    connections behind the requests would time out and take a busy instance out of rotation,
    which only moves its load to the others. Only the very first answer waits for the checks.
    """

    def __init__(
        self, checks: Sequence[ReadinessCheck], max_age: float = 0.5, timeout: float = 2.0
    ) -> None:
        self.checks = list(checks)
        self.max_age = max_age
        self.timeout = timeout
        self._answer: str | None = None
        self._checked_at: float | None = None
        self._running: asyncio.Task[None] | None = None

    async def __call__(self) -> str | None:
        stale = self._checked_at is None or time.monotonic() - self._checked_at >= self.max_age
        if stale and self._running is None:
            self._running = asyncio.create_task(self._check())
        if self._checked_at is None and self._running is not None:
            await asyncio.shield(self._running)
        return self._answer

    async def _check(self) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                problems = [problem for check in self.checks if (problem := await check())]
        except TimeoutError:
            problems = [f"the readiness checks took more than {self.timeout:g} s"]
        finally:
            self._running = None
        self._answer = "; ".join(problems) if problems else None
        self._checked_at = time.monotonic()


def _options_answer(app: Litestar) -> Callable[[Request[Any, Any, Any]], Response[None]]:
    """The answer to OPTIONS: 204 with `Allow`. Litestar 2's own answer lists only the methods
    of the first handler registered for a path (litestar#4169, fixed in 3); a path's complete
    route, once every handler is registered, knows them all."""
    allowed: dict[int, str] | None = None

    def answer(request: Request[Any, Any, Any]) -> Response[None]:
        nonlocal allowed
        if allowed is None:
            allowed = {
                id(handler): ", ".join(sorted(route.methods))
                for route in app.routes
                if isinstance(route, HTTPRoute)
                for handler in route.route_handlers
            }
        return Response(
            None, status_code=204, headers={"Allow": allowed[id(request.route_handler)]}
        )

    return answer


async def _check_media_type(request: Request[Any, Any, Any]) -> None:
    if request.method not in ("POST", "PUT", "PATCH"):
        return
    content_type = request.headers.get("content-type")
    empty = request.headers.get("content-length", "0") == "0" and (
        "transfer-encoding" not in request.headers
    )
    # a route that names its media types reads its body itself (a CSV import): it needs one
    raw = request.route_handler.opt.get("media_types")
    allowed = raw or JSON_ONLY
    if empty:
        body = request.route_handler.parsed_fn_signature.parameters.get("data")
        if raw or (body is not None and not body.has_default):
            raise BadRequest(f"This request needs a {' or '.join(allowed)} body")
    if content_type is None:
        if empty:
            return
        raise UnsupportedMediaType("A request with a body needs a Content-Type header")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in allowed:
        raise UnsupportedMediaType(f"Expected {' or '.join(allowed)}, got {media_type}")


def _health_router(
    checks: Sequence[ReadinessCheck],
    degrading: Sequence[ReadinessCheck],
    document: Callable[[], Document],
) -> Router:
    @get("/healthz", include_in_schema=False, sync_to_thread=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @get("/readyz", include_in_schema=False)
    async def readyz() -> Response[dict[str, Any]]:
        problems = [problem for check in checks if (problem := await check()) is not None]
        if problems:
            return Response(
                {"status": "unavailable", "problems": problems},
                status_code=503,
                headers={"Retry-After": "1"},
            )
        degraded = [problem for check in degrading if (problem := await check()) is not None]
        if degraded:
            return Response({"status": "degraded", "degraded": degraded})
        return Response({"status": "ok"})

    @get("/metrics", include_in_schema=False, sync_to_thread=False)
    def metrics() -> Response[bytes]:
        return Response(generate_latest(), media_type=_METRICS_MEDIA_TYPE)

    @get("/openapi.json", include_in_schema=False, sync_to_thread=False)
    def openapi_json() -> Document:
        return document()

    return Router("/", route_handlers=[healthz, readyz, metrics, openapi_json])


def create_app(
    *,
    title: str,
    routers: Sequence[Router],
    verifier: TokenVerifier,
    readiness: Sequence[ReadinessCheck] = (),
    degrading: Sequence[ReadinessCheck] = (),
    on_startup: Sequence[Callable[[], Awaitable[None]]] = (),
    on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
    response_cache: ResponseCache | None = None,
    document: Callable[[], Document] | None = None,
    tracing: Tracing | None = None,
) -> ASGIApp:
    """One service's (or every service's) HTTP app, wrapped in the request context.

    `/openapi.json` and `/docs` serve `document`, by default the document of the app's own
    routes (`openapi.published`). With `tracing`, every request but health, readiness and
    metrics has a server span, cached answers included.

    `/readyz` answers 503 while a `readiness` check fails (a load balancer then takes the
    instance out of rotation), and 200 with the problems listed as `degraded` while only a
    `degrading` check fails: a dependency the instance serves well enough without, such as a
    cache (taking every instance out because of it would turn a slower shop into no shop).
    """

    def authenticate(request: Request[Any, Any, Any]) -> Principal:
        principal: Principal | None = request.state.get(_PRINCIPAL)
        if principal is None:
            principal = verifier.from_header(request.headers.get("authorization"))
            reads_follow_writes_of(principal.id)
            request.state[_PRINCIPAL] = principal
        return principal

    def current_user(request: Request[Any, Any, Any]) -> Principal | None:
        """The caller, on a route that asks for it; None for the dependencies of a public
        route (which ignores any token)."""
        if "user" not in request.route_handler.parsed_fn_signature.parameters:
            return None
        return authenticate(request)

    app: Litestar
    own: Document | None = None

    def own_document() -> Document:
        # Built on first use: most apps (every test's) never serve their documentation.
        nonlocal own
        if own is None:
            own = published(app)
        return own

    schema = document or own_document

    async def before_request(request: Request[Any, Any, Any]) -> Response[Any] | None:
        if request.method == "OPTIONS":
            return options(request)
        if "user" in request.route_handler.parsed_fn_signature.parameters:
            authenticate(request)  # no or a bad token is 401, whatever is wrong with the body
        await _check_media_type(request)
        return None

    app = Litestar(
        route_handlers=[*routers, _health_router(readiness, degrading, schema)],
        request_class=StrictRequest,
        dependencies={"user": Provide(current_user, sync_to_thread=False)},
        before_request=before_request,
        exception_handlers={**EXCEPTION_HANDLERS, Replayed: _replayed},
        response_class=EdgeResponse,
        request_max_body_size=MAX_BODY,
        openapi_config=openapi_config(title, schema),
        on_startup=list(on_startup),
        on_shutdown=list(on_shutdown),
        logging_config=None,
        debug=False,
    )
    options = _options_answer(app)
    inner: ASGIApp = app if response_cache is None else EdgeCache(app, response_cache)
    if tracing is not None:
        inner = tracing.server(inner)
    return RequestContext(inner)


class RequestContext:
    """Outermost ASGI layer: request id, trace context and latency of every response.

    It sits outside the framework so that every answer, a routing 404 included, carries
    `X-Request-ID`.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        request_id = None
        traceparent = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value.decode("latin-1")
            elif name == b"traceparent":
                traceparent = value.decode("latin-1")
        if request_id is None or not _SAFE_REQUEST_ID.match(request_id):
            # 128 random bits as 32 hex digits, like a UUID's, at a fifth of uuid4's cost:
            # an id to correlate logs by, not a secret (`random` is reseeded in each fork)
            request_id = f"{random.getrandbits(128):032x}"
        request_id_var.set(request_id)
        start_request()
        traceparent_var.set(child_traceparent(traceparent))
        encoded_id = request_id.encode()
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", encoded_id)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("path_template", "unmatched")
            HTTP_LATENCY.labels(scope["method"], route, status).observe(
                time.perf_counter() - started
            )


def json_response(
    body: bytes, status: int = 200, headers: dict[str, str] | None = None
) -> Response[Any]:
    """A response whose JSON body is already encoded (cached or stored for idempotency)."""
    return Response(content=body, status_code=status, media_type=MediaType.JSON, headers=headers)


def refusal(error: BazaarError) -> Response[Any]:
    """The problem response of `error`, for a route to return rather than raise: what the
    request wrote still commits (a raised error rolls it back)."""
    return problem(error.status, error.title, error.detail, error.slug, headers=error.headers)


def service_router(
    controllers: Sequence[type[Controller]], dependencies: Mapping[str, Provide]
) -> Router:
    """A service's routes: its controllers, given what `dependencies` provide each request
    (its sessions and unit of work: `unit_of_work`)."""
    return Router("/", route_handlers=list(controllers), dependencies=dict(dependencies))


class EdgeResponse(Response[Any]):
    """The response of every route that returns data: on an idempotent route, its encoded
    status and body also go to the request's claim, to be stored with its effect before the
    transaction commits (the edge commits after the response is built, before it is sent)."""

    def to_asgi_response(
        self, app: Litestar | None, request: Request[Any, Any, Any], **kwargs: Any
    ) -> ASGIResponse:
        response = super().to_asgi_response(app, request, **kwargs)
        keep_response(request, response.status_code, response.body)
        return response


def _replayed(_request: Request[Any, Any, Any], replay: Replayed) -> Response[Any]:
    stored = replay.stored
    return json_response(stored.body, stored.status, {"Idempotent-Replayed": "true"})
