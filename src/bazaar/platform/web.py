"""The HTTP edge shared by every service: problem+json errors, request ids, metrics, health,
content-type and body-size checks, the current user, OpenAPI."""

import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
from litestar import Litestar, MediaType, Request, Response, Router, get
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import (
    Components,
    OpenAPI,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Reference,
    Schema,
    SecurityScheme,
)
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeout

from bazaar.platform.auth import Principal, TokenVerifier
from bazaar.platform.edge_cache import EdgeCache, ResponseCache
from bazaar.platform.errors import BadRequest, BazaarError, UnsupportedMediaType
from bazaar.platform.observability import (
    HTTP_LATENCY,
    child_traceparent,
    log,
    request_id_var,
    traceparent_var,
)

PROBLEM_JSON = "application/problem+json"
MAX_BODY = 1024 * 1024
JSON_ONLY = ("application/json",)
# Litestar appends the charset itself; twice, a scraper (Go's mime parser) rejects the header.
_METRICS_MEDIA_TYPE = CONTENT_TYPE_LATEST.partition("; charset=")[0]
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

CurrentUser = NamedDependency[Principal]
"""A route parameter `user: CurrentUser` requires a valid access token (else 401)."""

ReadinessCheck = Callable[[], Awaitable[str | None]]
"""Returns None when its dependency answers, else what is wrong."""


def problem(
    status: int,
    title: str,
    detail: str,
    slug: str,
    *,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": f"urn:bazaar:problem:{slug}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    return Response(
        content=msgspec.json.encode(body),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def _bazaar_error(_request: Request, error: BazaarError) -> Response:
    errors = getattr(error, "errors", None)
    return problem(
        error.status,
        error.title,
        error.detail,
        error.slug,
        headers=error.headers,
        errors=[{"loc": e.loc, "msg": e.msg} for e in errors] if errors is not None else None,
    )


_MALFORMED = ("malformed", "json is malformed", "invalid json", "trailing characters", "decode")
_TITLES = {
    400: ("Bad Request", "bad-request"),
    401: ("Unauthorized", "unauthorized"),
    404: ("Not Found", "not-found"),
    405: ("Method Not Allowed", "method-not-allowed"),
    413: ("Payload Too Large", "payload-too-large"),
}


def _validation_error(_request: Request, error: ValidationException) -> Response:
    extra = error.extra if isinstance(error.extra, list) else []
    messages = " ".join(str(item.get("message", "")) for item in extra if isinstance(item, dict))
    if not extra or any(marker in messages.lower() for marker in _MALFORMED):
        detail = "The request body is not valid JSON" if extra else str(error.detail)
        return problem(400, "Bad Request", detail, "bad-request")
    errors = [
        {
            "loc": [item.get("source") or "body", *_split_key(str(item.get("key") or ""))],
            "msg": str(item.get("message", "invalid")),
        }
        for item in extra
        if isinstance(item, dict)
    ]
    return problem(
        422, "Unprocessable Content", "The request is not valid", "validation", errors=errors
    )


def _split_key(key: str) -> list[str | int]:
    if key == "data":  # the whole body: Litestar names it after the handler's parameter
        return []
    parts: list[str | int] = []
    for part in re.split(r"[.\[\]]+", key.removeprefix("$")):
        if part:
            parts.append(int(part) if part.isdigit() else part)
    return parts


def _http_error(_request: Request, error: HTTPException) -> Response:
    status = error.status_code
    title, slug = _TITLES.get(status, ("Error", "error"))
    headers = dict(error.headers or {})
    detail = error.detail if status < 500 else "The server could not answer this request"
    if status == 400 and "json" in str(error.detail).lower():
        detail = "The request body is not valid JSON"
    return problem(status, title, str(detail), slug, headers=headers)


def _database_unavailable(request: Request, error: DBAPIError | SQLAlchemyTimeout) -> Response:
    """No connection within the pool's timeout, or the database refused: back-pressure."""
    if isinstance(error, DBAPIError) and not isinstance(error, OperationalError):
        return _unexpected_error(request, error)
    log.warning("database_unavailable", path=request.url.path, error_type=type(error).__name__)
    return problem(
        503,
        "Service Unavailable",
        "A database is busy or unreachable; retry shortly",
        "unavailable",
        headers={"Retry-After": "1"},
    )


def _unexpected_error(request: Request, error: Exception) -> Response:
    log.exception("unhandled_error", path=request.url.path, error_type=type(error).__name__)
    return problem(
        500, "Internal Server Error", "The server could not answer this request", "internal"
    )


async def _check_media_type(request: Request) -> None:
    if request.method not in ("POST", "PUT", "PATCH"):
        return
    content_type = request.headers.get("content-type")
    empty = request.headers.get("content-length", "0") == "0" and (
        "transfer-encoding" not in request.headers
    )
    if empty:
        body = request.route_handler.parsed_fn_signature.parameters.get("data")
        if body is not None and not body.has_default:
            raise BadRequest("This request needs a JSON body")
    if content_type is None:
        if empty:
            return
        raise UnsupportedMediaType("A request with a body needs a Content-Type header")
    allowed = request.route_handler.opt.get("media_types", JSON_ONLY)
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in allowed:
        raise UnsupportedMediaType(f"Expected {' or '.join(allowed)}, got {media_type}")


_STATUS_TITLES = {
    400: "Bad Request: malformed JSON or a missing or invalid header",
    401: "Unauthorized: no or bad access token",
    403: "Forbidden: wrong role",
    404: "Not Found",
    409: "Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content: validation failed (see `errors`)",
    429: "Too Many Requests (see `Retry-After`)",
    503: "Service Unavailable: a dependency is down (see `Retry-After`)",
}
_RETRY_AFTER = {429, 503}
_PROBLEM_SCHEMA = Schema(
    type=OpenAPIType.OBJECT,
    required=["type", "title", "status", "detail"],
    properties={
        "type": Schema(type=OpenAPIType.STRING),
        "title": Schema(type=OpenAPIType.STRING),
        "status": Schema(type=OpenAPIType.INTEGER),
        "detail": Schema(type=OpenAPIType.STRING),
        "errors": Schema(
            type=OpenAPIType.ARRAY,
            items=Schema(
                type=OpenAPIType.OBJECT,
                required=["loc", "msg"],
                properties={
                    "loc": Schema(
                        type=OpenAPIType.ARRAY,
                        items=Schema(
                            one_of=[
                                Schema(type=OpenAPIType.STRING),
                                Schema(type=OpenAPIType.INTEGER),
                            ]
                        ),
                    ),
                    "msg": Schema(type=OpenAPIType.STRING),
                },
            ),
        ),
    },
    description="An RFC 9457 problem; `errors` lists the fields that failed validation.",
)


def problems(*statuses: int) -> dict[int, ResponseSpec]:
    """The `responses` of a route handler for the errors particular to it (403, 404, 409...).

    The errors every route may give (400, 401, 413, 415, 422, 503) are added to the document
    by the edge; each error response is described as `application/problem+json`.
    """
    return {
        status: ResponseSpec(None, description=_STATUS_TITLES[status], media_type=PROBLEM_JSON)
        for status in statuses
    }


def _document_problems(openapi: OpenAPI) -> None:
    """Describe every error response as problem+json, with the errors every route may give."""
    schemas = openapi.components.schemas = dict(openapi.components.schemas or {})
    schemas["Problem"] = _PROBLEM_SCHEMA
    content = {PROBLEM_JSON: OpenAPIMediaType(schema=Reference("#/components/schemas/Problem"))}
    retry_after = {"Retry-After": OpenAPIHeader(schema=Schema(type=OpenAPIType.INTEGER))}
    for path_item in (openapi.paths or {}).values():
        for method in ("get", "put", "post", "delete", "patch"):
            operation = getattr(path_item, method)
            if operation is None:
                continue
            statuses = {503}
            if operation.security:
                statuses.add(401)
            if any(parameter.param_in != "path" for parameter in operation.parameters or ()):
                statuses |= {400, 422}
            if operation.request_body is not None:
                statuses |= {413, 415}
                if JSON_ONLY[0] in (operation.request_body.content or {}):
                    statuses |= {400, 422}
            responses = operation.responses = dict(operation.responses or {})
            # Litestar's own 400 (its JSON error body) is dropped unless the rules above keep it
            statuses |= {
                int(code)
                for code, response in responses.items()
                if code.isdigit()
                and int(code) >= 400
                and not (isinstance(response, OpenAPIResponse) and response.content)
            }
            for code in [code for code in responses if code.isdigit() and int(code) >= 400]:
                del responses[code]
            for status in sorted(statuses):
                responses[str(status)] = OpenAPIResponse(
                    description=_STATUS_TITLES.get(status, "Error"),
                    content=content,
                    headers=retry_after if status in _RETRY_AFTER else None,
                )


class _DocsPage(SwaggerRenderPlugin):
    """Swagger UI over the same document as `/openapi.json` (with its problem responses)."""

    def __init__(self, schema: Callable[[], dict], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._schema = schema

    def render(self, request: Request, openapi_schema: dict[str, Any]) -> bytes:
        return super().render(request, self._schema())


def _health_router(checks: Sequence[ReadinessCheck], get_schema: Callable[[], dict]) -> Router:
    @get("/healthz", include_in_schema=False, sync_to_thread=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        problems = [problem for check in checks if (problem := await check()) is not None]
        if problems:
            return Response(
                {"status": "unavailable", "problems": problems},
                status_code=503,
                headers={"Retry-After": "1"},
            )
        return Response({"status": "ok"})

    @get("/metrics", include_in_schema=False, sync_to_thread=False)
    def metrics() -> Response:
        return Response(generate_latest(), media_type=_METRICS_MEDIA_TYPE)

    @get("/openapi.json", include_in_schema=False, sync_to_thread=False)
    def openapi_json() -> dict:
        return get_schema()

    return Router("/", route_handlers=[healthz, readyz, metrics, openapi_json])


def create_app(
    *,
    title: str,
    routers: Sequence[Router],
    verifier: TokenVerifier,
    readiness: Sequence[ReadinessCheck] = (),
    on_startup: Sequence[Callable[[], Awaitable[None]]] = (),
    on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
    response_cache: ResponseCache | None = None,
) -> ASGIApp:
    """One service's (or every service's) HTTP app, wrapped in the request context."""

    def current_user(request: Request) -> Principal:
        return verifier.from_header(request.headers.get("authorization"))

    app: Litestar
    document: dict | None = None

    def schema() -> dict:
        # Built on first use: most apps (every test's) never serve their documentation.
        nonlocal document
        if document is None:
            openapi = app.openapi_schema
            _document_problems(openapi)
            document = openapi.to_schema()
        return document

    app = Litestar(
        route_handlers=[*routers, _health_router(readiness, schema)],
        dependencies={"user": Provide(current_user, sync_to_thread=False)},
        before_request=_check_media_type,
        exception_handlers={
            BazaarError: _bazaar_error,
            ValidationException: _validation_error,
            HTTPException: _http_error,
            SQLAlchemyTimeout: _database_unavailable,
            DBAPIError: _database_unavailable,
            Exception: _unexpected_error,
        },
        request_max_body_size=MAX_BODY,
        openapi_config=OpenAPIConfig(
            title=title,
            version="1.0.0",
            path="/docs",
            render_plugins=[_DocsPage(schema, path="/")],
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")
                }
            ),
        ),
        on_startup=list(on_startup),
        on_shutdown=list(on_shutdown),
        logging_config=None,
        debug=False,
    )
    inner: ASGIApp = app if response_cache is None else EdgeCache(app, response_cache)
    return RequestContext(inner)


class RequestContext:
    """Outermost ASGI layer: request id, trace context and latency of every response.

    It sits outside the framework so that every answer, a routing 404 included, carries
    `X-Request-ID`.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
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
            request_id = uuid.uuid4().hex
        request_id_var.set(request_id)
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
) -> Response:
    """A response whose JSON body is already encoded (cached or stored for idempotency)."""
    return Response(content=body, status_code=status, media_type=MediaType.JSON, headers=headers)
