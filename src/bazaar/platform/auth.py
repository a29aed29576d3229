"""Access tokens: Ed25519-signed JWTs that every service verifies alone, with the public key.

Only identity holds the private key and issues tokens; the other services get the public keys
(`platform.keys`) and never call identity to check one.
"""

import time
from collections.abc import Sequence
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bazaar.platform.errors import Forbidden, Unauthorized
from bazaar.platform.keys import key_id

ALGORITHM = "EdDSA"
ISSUER = "bazaar"

VERIFIED_TOKENS = 10_000
"""Tokens remembered as verified, per verifier: the callers of the last few minutes."""

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


class TokenIssuer:
    """Signs access tokens with identity's private key, named in each token's `kid`."""

    def __init__(self, key: Ed25519PrivateKey, ttl_seconds: int) -> None:
        self._key = key
        self._headers = {"kid": key_id(key.public_key())}
        self.ttl_seconds = ttl_seconds

    def issue(self, user_id: str, role: str) -> str:
        now = int(time.time())
        claims = {"sub": user_id, "role": role, "iss": ISSUER, "iat": now}
        claims["exp"] = now + self.ttl_seconds
        return jwt.encode(claims, self._key, algorithm=ALGORITHM, headers=self._headers)


class TokenVerifier:
    """Verifies access tokens with public keys alone: the one their `kid` names (several are
    valid at once while the signing key is rotated)."""

    def __init__(self, public_keys: Sequence[Ed25519PublicKey]) -> None:
        if not public_keys:
            raise ValueError("a verifier needs at least one public key")
        self.public_keys = list(public_keys)
        self._by_id = {key_id(key): key for key in self.public_keys}
        self._verified: dict[str, tuple[Principal, float]] = {}

    def verify(self, token: str) -> Principal:
        """The token's principal; a token verified before is not verified again (a
        signature check costs more than the rest of a cached read) until it expires."""
        known = self._verified.get(token)
        if known is not None:
            principal, expires = known
            if time.time() < expires:
                return principal
            raise Unauthorized("The access token has expired")
        principal, expires = self._verify(token)
        if len(self._verified) >= VERIFIED_TOKENS:
            del self._verified[next(iter(self._verified))]  # the oldest
        self._verified[token] = (principal, expires)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            # a token of before key ids (no kid) can only be the first key's
            key = self._by_id.get(kid) if isinstance(kid, str) else None
            if kid is None:
                key = self.public_keys[0]
            if key is None:
                raise Unauthorized("The access token was signed with an unknown key")
            claims = jwt.decode(
                token,
                key,
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
        return Principal(id=claims["sub"], role=role), float(claims["exp"])

    def from_header(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthorized("This operation needs an access token")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("Expected 'Authorization: Bearer <access_token>'")
        return self.verify(token.strip())
