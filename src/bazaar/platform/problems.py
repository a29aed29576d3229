"""Errors as RFC 9457 problem+json: the exception handlers of the HTTP edge.

No error response carries a stack trace, a SQL fragment or a secret: what is unexpected is
logged with the request id and answered with a generic 500.
"""

import re
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap

from bazaar.platform.errors import BazaarError
from bazaar.platform.observability import log
from bazaar.platform.transient import is_transient

PROBLEM_JSON = "application/problem+json"


def problem(
    status: int,
    title: str,
    detail: str,
    slug: str,
    *,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> Response[bytes]:
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


def _bazaar_error(_request: Request[Any, Any, Any], error: BazaarError) -> Response[bytes]:
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


def _validation_error(
    _request: Request[Any, Any, Any], error: ValidationException
) -> Response[bytes]:
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


def _http_error(_request: Request[Any, Any, Any], error: HTTPException) -> Response[bytes]:
    status = error.status_code
    title, slug = _TITLES.get(status, ("Error", "error"))
    headers = dict(error.headers or {})
    detail = error.detail if status < 500 else "The server could not answer this request"
    if status == 400 and "json" in str(error.detail).lower():
        detail = "The request body is not valid JSON"
    return problem(status, title, str(detail), slug, headers=headers)


def _server_error(request: Request[Any, Any, Any], error: Exception) -> Response[bytes]:
    """A dependency briefly unavailable (`transient`) is back-pressure, 503 with Retry-After:
    the database restarting, a dropped connection, a pool or lock wait that ran out. Anything
    else is unexpected: logged with its traceback, answered with a generic 500."""
    if not is_transient(error):
        return _unexpected_error(request, error)
    log.warning("dependency_unavailable", path=request.url.path, error_type=type(error).__name__)
    return problem(
        503,
        "Service Unavailable",
        "A database or another dependency is busy or unreachable; retry shortly",
        "unavailable",
        headers={"Retry-After": "1"},
    )


def _unexpected_error(request: Request[Any, Any, Any], error: Exception) -> Response[bytes]:
    log.exception("unhandled_error", path=request.url.path, error_type=type(error).__name__)
    return problem(
        500, "Internal Server Error", "The server could not answer this request", "internal"
    )


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    BazaarError: _bazaar_error,
    ValidationException: _validation_error,
    HTTPException: _http_error,
    Exception: _server_error,
}
