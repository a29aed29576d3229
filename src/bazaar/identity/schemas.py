"""Identity's request and response bodies."""

from typing import Annotated, Literal

import msgspec

# No space nor control character (C1 and U+FEFF too, so that Python's `\s` and ECMA-262's,
# the document's, refuse the same characters).
_EMAIL_PART = r"[^@\s\x00-\x1f\x7f-\x9f\ufeff]+"
Email = Annotated[
    str, msgspec.Meta(max_length=254, pattern=rf"^{_EMAIL_PART}@{_EMAIL_PART}\.{_EMAIL_PART}$")
]
Password = Annotated[str, msgspec.Meta(min_length=8, max_length=128)]


class RegisterRequest(msgspec.Struct, forbid_unknown_fields=False):
    email: Email
    password: Password
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class LoginRequest(msgspec.Struct):
    email: Annotated[str, msgspec.Meta(max_length=254)]
    password: Annotated[str, msgspec.Meta(max_length=128)]


class RefreshRequest(msgspec.Struct):
    refresh_token: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class UserRead(msgspec.Struct):
    id: str
    email: str
    name: str
    role: str


class TokenPair(msgspec.Struct):
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: Literal["bearer"] = "bearer"
