"""Errors as RFC 9457 problem+json: the exception handlers of the HTTP edge.

No error response carries a stack trace, a SQL fragment or a secret: what is unexpected is
logged with the request id and answered with a generic 500.
"""

import re
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeout

from bazaar.platform.errors import BazaarError
from bazaar.platform.observability import log

PROBLEM_JSON = "application/problem+json"


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


def _database_unavailable(
    request: Request, error: DBAPIError | SQLAlchemyTimeout | TimeoutError | ConnectionError
) -> Response:
    """No connection within the pool's timeout, or the database refused: back-pressure.

    A connection that could not be opened in time (or was refused) reaches here unwrapped:
    SQLAlchemy wraps only the driver's own errors, not asyncpg's connect timeout.
    """
    state = _sqlstate(error) if isinstance(error, DBAPIError) else None
    if isinstance(error, DBAPIError) and not (
        isinstance(error, OperationalError)
        or state in _BUSY_STATES
        or (state or "").startswith("08")  # connection exception, e.g. PgBouncer's wait ended
    ):
        return _unexpected_error(request, error)
    log.warning("database_unavailable", path=request.url.path, error_type=type(error).__name__)
    return problem(
        503,
        "Service Unavailable",
        "A database is busy or unreachable; retry shortly",
        "unavailable",
        headers={"Retry-After": "1"},
    )


_BUSY_STATES = {"55P03", "57014"}
"""Lock not available (lock_timeout), statement cancelled (a timeout): busy, not broken."""


def _sqlstate(error: DBAPIError) -> str | None:
    return getattr(error.orig, "sqlstate", None) or getattr(
        getattr(error.orig, "__cause__", None), "sqlstate", None
    )


def _unexpected_error(request: Request, error: Exception) -> Response:
    log.exception("unhandled_error", path=request.url.path, error_type=type(error).__name__)
    return problem(
        500, "Internal Server Error", "The server could not answer this request", "internal"
    )


EXCEPTION_HANDLERS = {
    BazaarError: _bazaar_error,
    ValidationException: _validation_error,
    HTTPException: _http_error,
    SQLAlchemyTimeout: _database_unavailable,
    DBAPIError: _database_unavailable,
    TimeoutError: _database_unavailable,
    ConnectionError: _database_unavailable,
    Exception: _unexpected_error,
}
