"""Access tokens: Ed25519-signed JWTs that every service verifies alone, with the public key.

Only identity holds the private key and issues tokens; the other services get the public key
and never call identity to check one.
"""

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bazaar.platform.errors import Forbidden, Unauthorized

ALGORITHM = "EdDSA"
ISSUER = "bazaar"

CUSTOMER = "customer"
ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as their access token says."""

    id: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN

    def require_admin(self) -> None:
        if not self.is_admin:
            raise Forbidden("This operation needs the admin role")

    def may_see(self, owner_id: str) -> bool:
        return self.is_admin or self.id == owner_id


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The signing key kept under the data directory, created on first start.

    Processes that start together on a new data directory agree on one key: each writes its
    candidate to a file of its own and links it into place, which only the first one does;
    the others then read the winner's.
    """
    if path.exists():
        return parse_private_key(path.read_text())
    candidate = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = candidate.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    temporary = path.with_suffix(f".{os.getpid()}.{secrets.token_hex(4)}.tmp")
    temporary.write_bytes(pem)
    temporary.chmod(0o600)
    try:
        os.link(temporary, path)  # fails if another process linked its key first
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
    return parse_private_key(path.read_text())


def parse_private_key(pem: str) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the token-signing key must be an Ed25519 private key")
    return key


class TokenIssuer:
    def __init__(self, key: Ed25519PrivateKey, ttl_seconds: int) -> None:
        self._key = key
        self.ttl_seconds = ttl_seconds

    def issue(self, user_id: str, role: str) -> str:
        now = int(time.time())
        claims = {"sub": user_id, "role": role, "iss": ISSUER, "iat": now}
        claims["exp"] = now + self.ttl_seconds
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)


class TokenVerifier:
    def __init__(self, public_key: Ed25519PublicKey) -> None:
        self._key = public_key

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["exp", "sub", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("The access token has expired") from None
        except jwt.InvalidTokenError:
            raise Unauthorized("The access token is not valid") from None
        role = claims.get("role")
        if role not in (CUSTOMER, ADMIN):
            raise Unauthorized("The access token is not valid")
        return Principal(id=claims["sub"], role=role)

    def from_header(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthorized("This operation needs an access token")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("Expected 'Authorization: Bearer <access_token>'")
        return self.verify(token.strip())
