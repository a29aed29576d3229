"""JSON request bodies, decoded strictly into the route's body type.

The contract types bodies strictly: a string `"1"` or a float `2.0` where an integer is
documented is 422, never converted. Litestar decodes a body into plain values and then converts
them leniently (so that query strings may become numbers); `StrictRequest` decodes the body
straight into the type the route declares, with msgspec's strict rules, and Litestar's own
conversion then takes the typed value as it is. A body nested too deeply to decode is a 400,
not a crash.
"""

import re
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import ValidationException
from litestar.types import Empty

from bazaar.platform.errors import BadRequest


class StrictRequest(Request[Any, Any, Any]):
    """A request whose `json()` is the body decoded strictly into the route's `data` type."""

    async def json(self) -> Any:
        if self._json is Empty:
            body = await self.body()
            self._json = self._connection_state.json = decode_body(
                body or b"null", _body_type(self)
            )
        return self._json


def _body_type(request: Request[Any, Any, Any]) -> Any:
    data = request.route_handler.parsed_fn_signature.parameters.get("data")
    return Any if data is None else data.annotation


def decode_body(body: bytes, target: Any) -> Any:
    """`body` as a `target`; ValidationException (422, or 400 when it is not JSON) or
    BadRequest (nested too deeply) otherwise."""
    try:
        value = msgspec.json.decode(body, type=target, strict=True)
    except msgspec.ValidationError as error:
        message, _, where = str(error).partition(" - at `")
        problem = {"message": message, "key": where.rstrip("`") or "$", "source": "body"}
        raise ValidationException(detail="The request is not valid", extra=[problem]) from None
    except msgspec.DecodeError:
        malformed = {"message": "JSON is malformed", "key": "$", "source": "body"}
        raise ValidationException(detail="Invalid JSON", extra=[malformed]) from None
    except RecursionError:
        raise BadRequest("The JSON body is nested too deeply") from None
    if (path := _control_character_in(value, "$")) is not None:
        message = "Control characters are not allowed here"
        problem = {"message": message, "key": path, "source": "body"}
        raise ValidationException(detail="The request is not valid", extra=[problem])
    return value


_CONTROLS = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f"
CONTROL = re.compile(f"[{_CONTROLS}]")
"""C0 controls and DEL, but for tab, line feed and carriage return: no field of the API takes
them (a NUL in an email address, a U+0001 in a name), while free text may hold lines. Fields
that must be one line say so in their own pattern."""
WITHOUT_CONTROLS = f"^[^{_CONTROLS}]*$"
"""The same rule as a pattern of the OpenAPI document (ECMA-262 reads these escapes alike)."""


def _control_character_in(value: Any, where: str) -> str | None:
    """The path of the first string within `value` holding a control character, if any."""
    if isinstance(value, str):
        return where if CONTROL.search(value) else None
    if isinstance(value, msgspec.Struct):
        items = ((f"{where}.{name}", getattr(value, name)) for name in value.__struct_fields__)
    elif isinstance(value, dict):
        items = ((f"{where}.{key}", item) for key, item in value.items())
    elif isinstance(value, list | tuple):
        items = ((f"{where}[{i}]", item) for i, item in enumerate(value))
    else:
        return None
    for path, item in items:
        if (found := _control_character_in(item, path)) is not None:
            return found
    return None
