"""Identity's HTTP routes: parse, call a use case, shape the response."""

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from litestar import Request, Router, get, post
from litestar.datastructures import CacheControlHeader
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from bazaar.identity import service
from bazaar.identity.schemas import (
    LoginRequest,
    RefreshRequest,
    RegisterRequest,
    TokenPair,
    UserRead,
)
from bazaar.identity.service import Passwords, Tokens
from bazaar.identity.settings import IdentitySettings
from bazaar.platform.auth import TokenIssuer
from bazaar.platform.db import Database
from bazaar.platform.errors import Unauthorized
from bazaar.platform.keys import jwks
from bazaar.platform.openapi import problems
from bazaar.platform.ratelimit import RateLimiter
from bazaar.platform.replicas import reads_follow_writes_of
from bazaar.platform.web import CurrentUser


def _pair(tokens: Tokens) -> TokenPair:
    return TokenPair(tokens.access_token, tokens.refresh_token, tokens.expires_in)


def _user(user: service.User) -> UserRead:
    return UserRead(id=user.id, email=user.email, name=user.name, role=user.role)


def create_router(
    db: Database,
    passwords: Passwords,
    issuer: TokenIssuer,
    limiter: RateLimiter,
    settings: IdentitySettings,
    public_keys: list[Ed25519PublicKey],
) -> Router:
    key_set = jwks(public_keys)

    @post(
        "/auth/register",
        status_code=HTTP_201_CREATED,
        summary="Register a customer",
        responses=problems(409),
    )
    async def register(data: JSONBody[RegisterRequest]) -> UserRead:
        async with db.write() as session:
            user = await service.register_user(
                session, passwords, email=data.email, password=data.password, name=data.name
            )
            reads_follow_writes_of(user.id)
        return _user(user)

    @post(
        "/auth/login",
        status_code=HTTP_200_OK,
        summary="Log in: a new token pair",
        responses=problems(401, 429),
    )
    async def login(data: JSONBody[LoginRequest], request: Request) -> TokenPair:
        by_email = ("login-email", service.email_key(data.email))
        by_ip = ("login-ip", request.client.host if request.client else "unknown")
        await limiter.check(settings.login_failures_per_email, *by_email)
        await limiter.check(settings.login_failures_per_ip, *by_ip)
        # fresh: an account registered a moment ago may not be on a replica yet
        async with db.read(fresh=True) as session:
            user = await service.authenticate(session, passwords, data.email, data.password)
        if user is None:
            await limiter.hit(settings.login_failures_per_email, *by_email)
            await limiter.hit(settings.login_failures_per_ip, *by_ip)
            raise Unauthorized("The email or password is wrong")
        reads_follow_writes_of(user.id)  # their next requests, signed in, see this session
        async with db.write() as session:
            tokens = await service.start_session(session, issuer, user, settings.refresh_token_ttl)
        return _pair(tokens)

    @post(
        "/auth/refresh",
        status_code=HTTP_200_OK,
        summary="Rotate a refresh token",
        responses=problems(401),
    )
    async def refresh(data: JSONBody[RefreshRequest]) -> TokenPair:
        async with db.write() as session:
            tokens = await service.rotate_refresh_token(
                session, issuer, data.refresh_token, settings.refresh_token_ttl
            )
        if tokens is None:
            raise Unauthorized("The refresh token was already used; the session is revoked")
        return _pair(tokens)

    @post(
        "/auth/logout",
        status_code=HTTP_204_NO_CONTENT,
        summary="Revoke a session",
        responses=problems(401),
    )
    async def logout(data: JSONBody[RefreshRequest]) -> None:
        async with db.write() as session:
            await service.revoke_family_of(session, data.refresh_token)

    @get("/users/me", summary="The calling user", security=[{"bearer": []}])
    async def me(user: CurrentUser) -> UserRead:
        async with db.read() as session:
            return _user(await service.get_user(session, user.id))

    @get(
        "/.well-known/jwks.json",
        summary="The public keys that verify access tokens (JWKS; two while a key is rotated)",
        sync_to_thread=False,
        cache_control=CacheControlHeader(public=True, max_age=300),
    )
    def json_web_keys() -> dict:
        return key_set

    return Router(
        "/",
        route_handlers=[
            Router("/v1", route_handlers=[register, login, refresh, logout, me]),
            json_web_keys,
        ],
        tags=["identity"],
    )
