"""Identity's HTTP routes: register, log in, rotate and revoke refresh tokens, the caller's
account, and the public keys that verify access tokens."""

from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from litestar import Controller, Response, get, post
from litestar.datastructures import CacheControlHeader
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from bazaar.identity import service
from bazaar.identity.models import User
from bazaar.identity.schemas import (
    LoginRequest,
    RefreshRequest,
    RegisterRequest,
    TokenPair,
    UserRead,
)
from bazaar.identity.service import IdentityWork, Passwords, Tokens
from bazaar.identity.settings import IdentitySettings
from bazaar.platform.auth import TokenIssuer
from bazaar.platform.db import Database
from bazaar.platform.errors import Unauthorized
from bazaar.platform.idempotency import Claim
from bazaar.platform.keys import jwks
from bazaar.platform.openapi import problems
from bazaar.platform.ratelimit import RateLimiter
from bazaar.platform.unit_of_work import (
    AnyRequest,
    Caller,
    ReadOnly,
    Transaction,
    provide_reader,
    provide_session,
    provide_work,
)
from bazaar.platform.web import BEARER, CurrentUser, refusal

Work = NamedDependency[IdentityWork]
KeySet = NamedDependency[dict[str, Any]]


def dependencies(
    db: Database,
    passwords: Passwords,
    issuer: TokenIssuer,
    limiter: RateLimiter,
    settings: IdentitySettings,
    public_keys: list[Ed25519PublicKey],
) -> dict[str, Provide]:
    """What identity's routes are given per request: `work` (an `IdentityWork`), `session`,
    `reader`, and the key set (`key_set`)."""
    key_set = jwks(public_keys)

    def database(_request: AnyRequest, _user: Caller) -> Database:
        return db

    def work(_request: AnyRequest, _user: Caller, claim: Claim | None) -> IdentityWork:
        return IdentityWork(db, passwords, issuer, limiter, settings, claim=claim)

    def keys() -> dict[str, Any]:
        return key_set

    return {
        "work": provide_work(work),
        "session": provide_session(database),
        "reader": provide_reader(database),
        "key_set": Provide(keys, use_cache=True, sync_to_thread=False),
    }


class AccountController(Controller):
    path = "/v1"
    tags = ["identity"]

    @post(
        "/auth/register",
        status_code=HTTP_201_CREATED,
        summary="Register a customer",
        responses=problems(409),
    )
    async def register_user(self, data: JSONBody[RegisterRequest], work: Work) -> UserRead:
        user = await service.sign_up(work, email=data.email, password=data.password, name=data.name)
        return _user(user)

    @post(
        "/auth/login",
        status_code=HTTP_200_OK,
        summary="Log in: a new token pair",
        responses=problems(401, 429),
    )
    async def login(
        self, data: JSONBody[LoginRequest], request: AnyRequest, work: Work
    ) -> TokenPair:
        client = request.client.host if request.client else "unknown"
        return _pair(await service.log_in(work, data.email, data.password, client))

    @post(
        "/auth/refresh",
        status_code=HTTP_200_OK,
        summary="Rotate a refresh token",
        responses=problems(401),
    )
    async def refresh_tokens(
        self, data: JSONBody[RefreshRequest], work: Work
    ) -> Response[TokenPair]:
        tokens = await service.refresh_session(work, data.refresh_token)
        if tokens is None:  # returned, not raised: the family's revocation commits
            return refusal(
                Unauthorized("The refresh token was already used; the session is revoked")
            )
        return Response(_pair(tokens))

    @post(
        "/auth/logout",
        status_code=HTTP_204_NO_CONTENT,
        summary="Revoke a session",
        responses=problems(401),
    )
    async def logout(self, data: JSONBody[RefreshRequest], session: Transaction) -> None:
        await service.revoke_family_of(session, data.refresh_token)

    @get("/users/me", summary="The calling user", security=BEARER)
    async def get_current_user(self, user: CurrentUser, reader: ReadOnly) -> UserRead:
        return _user(await service.get_user(reader, user.id))


class KeysController(Controller):
    path = "/.well-known"
    tags = ["identity"]

    @get(
        "/jwks.json",
        summary="The public keys that verify access tokens (JWKS; two while a key is rotated)",
        sync_to_thread=False,
        cache_control=CacheControlHeader(public=True, max_age=300),
    )
    def get_json_web_keys(self, key_set: KeySet) -> dict[str, Any]:
        return key_set


CONTROLLERS = [AccountController, KeysController]


def _pair(tokens: Tokens) -> TokenPair:
    return TokenPair(tokens.access_token, tokens.refresh_token, tokens.expires_in)


def _user(user: User) -> UserRead:
    return UserRead(id=user.id, email=user.email, name=user.name, role=user.role)
