"""Cursor pagination: `?limit=` (1..100, default 20) and an opaque `?cursor=`."""

import base64
import binascii
from typing import Annotated, Any, Generic, TypeVar

import msgspec
from litestar.params import Parameter

from bazaar.platform.errors import FieldError, Unprocessable

T = TypeVar("T")

Limit = Annotated[int, Parameter(ge=1, le=100, description="Items per page (1..100).")]
Cursor = Annotated[
    str | None, Parameter(max_length=500, description="`next_cursor` of the previous page.")
]


class Page(msgspec.Struct, Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(*position: Any) -> str:
    """An opaque cursor for the position after the last item of a page (its sort key)."""
    return base64.urlsafe_b64encode(msgspec.json.encode(position)).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> list[Any] | None:
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        position = msgspec.json.decode(base64.urlsafe_b64decode(padded))
    except (binascii.Error, msgspec.DecodeError, ValueError):
        position = None
    if not isinstance(position, list):
        raise Unprocessable("The cursor is not valid", [FieldError(["query", "cursor"], "invalid")])
    return position


def page_of(items: list[T], limit: int, sort_key: Any) -> Page[T]:
    """A page from up to `limit + 1` fetched items: the extra one says whether more follow."""
    if len(items) <= limit:
        return Page(items=items, next_cursor=None)
    kept = items[:limit]
    return Page(items=kept, next_cursor=encode_cursor(*sort_key(kept[-1])))
