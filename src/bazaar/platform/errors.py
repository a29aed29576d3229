"""Domain errors that every layer may raise; the web edge turns each into problem+json."""

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    loc: list[str | int]
    msg: str


class BazaarError(Exception):
    """An error with a meaning for the client: its status and title are part of the API."""

    status = 500
    title = "Internal Server Error"
    slug = "internal"

    def __init__(self, detail: str = "", *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.headers = headers or {}


class BadRequest(BazaarError):
    status, title, slug = 400, "Bad Request", "bad-request"


class Unauthorized(BazaarError):
    status, title, slug = 401, "Unauthorized", "unauthorized"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(BazaarError):
    status, title, slug = 403, "Forbidden", "forbidden"


class NotFound(BazaarError):
    status, title, slug = 404, "Not Found", "not-found"


class Conflict(BazaarError):
    status, title, slug = 409, "Conflict", "conflict"


class PayloadTooLarge(BazaarError):
    status, title, slug = 413, "Payload Too Large", "payload-too-large"


class UnsupportedMediaType(BazaarError):
    status, title, slug = 415, "Unsupported Media Type", "unsupported-media-type"


class Unprocessable(BazaarError):
    status, title, slug = 422, "Unprocessable Content", "validation"

    def __init__(self, detail: str = "", errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.errors = errors or []


class RateLimited(BazaarError):
    status, title, slug = 429, "Too Many Requests", "rate-limited"

    def __init__(self, retry_after: int, detail: str = "") -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))})


class Unavailable(BazaarError):
    status, title, slug = 503, "Service Unavailable", "unavailable"

    def __init__(self, detail: str = "", retry_after: int = 1) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})
