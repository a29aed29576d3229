"""Identity's use cases: register, log in, rotate and revoke refresh tokens.

Refresh tokens rotate: each use returns a new token of the same family and marks the old one
used. Presenting a used token again means it was stolen or replayed, so the whole family is
revoked and every token in it stops working.
"""

import asyncio
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select, update

from bazaar.identity.events import UserRegistered
from bazaar.identity.models import RefreshToken, RefreshTokenFamily, User
from bazaar.identity.settings import IdentitySettings
from bazaar.platform import outbox
from bazaar.platform.auth import CUSTOMER, TokenIssuer
from bazaar.platform.clock import utcnow
from bazaar.platform.db import Database, ReadSession, WriteSession
from bazaar.platform.errors import Conflict, NotFound, Unauthorized
from bazaar.platform.idempotency import Claim
from bazaar.platform.ids import new_id
from bazaar.platform.ratelimit import RateLimiter
from bazaar.platform.replicas import reads_follow_writes_of
from bazaar.platform.statements import rows_matched
from bazaar.platform.unit_of_work import UnitOfWork


class Passwords:
    """argon2id hashing, off the event loop (a hash costs milliseconds of CPU on purpose)."""

    def __init__(self, time_cost: int, memory_kib: int) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=1)
        self._decoy = self._hasher.hash(secrets.token_hex(16))

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Check `password`; with no hash (unknown user) spend the same time and say no."""

        def check() -> bool:
            try:
                return self._hasher.verify(password_hash or self._decoy, password)
            except (VerificationError, InvalidHashError):
                return False

        return await asyncio.to_thread(check) and password_hash is not None


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str
    expires_in: int


class IdentityWork(UnitOfWork):
    """Identity's unit of work for one request: its database, the password hasher, the token
    issuer, and the limiter of failed logins with its settings."""

    def __init__(
        self,
        db: Database,
        passwords: Passwords,
        issuer: TokenIssuer,
        limiter: RateLimiter,
        settings: IdentitySettings,
        *,
        claim: Claim | None = None,
    ) -> None:
        super().__init__(db, claim=claim)
        self.passwords = passwords
        self.issuer = issuer
        self.limiter = limiter
        self.settings = settings


def email_key(email: str) -> str:
    return email.strip().lower()


async def sign_up(work: IdentityWork, *, email: str, password: str, name: str) -> User:
    """Register a customer (`register_user`) in the request's transaction; their next requests
    read what this one wrote."""
    user = await register_user(
        await work.session(), work.passwords, email=email, password=password, name=name
    )
    reads_follow_writes_of(user.id)
    return user


async def log_in(work: IdentityWork, email: str, password: str, client: str) -> Tokens:
    """Open a session (`start_session`) for the user whose password this is.

    Raises RateLimited while the email or the `client` address failed too often, Unauthorized
    for a wrong email or password (a failure both count). The password is checked on the
    primary, outside the write transaction: an account registered a moment ago may not be on a
    replica yet, and a hash takes milliseconds.
    """
    limits = work.settings
    by_email = ("login-email", email_key(email))
    by_ip = ("login-ip", client)
    await work.limiter.check(limits.login_failures_per_email, *by_email)
    await work.limiter.check(limits.login_failures_per_ip, *by_ip)
    async with work.read(fresh=True) as session:
        user = await authenticate(session, work.passwords, email, password)
    if user is None:
        await work.limiter.hit(limits.login_failures_per_email, *by_email)
        await work.limiter.hit(limits.login_failures_per_ip, *by_ip)
        raise Unauthorized("The email or password is wrong")
    reads_follow_writes_of(user.id)  # their next requests, signed in, see this session
    return await start_session(
        await work.session(), work.issuer, user, work.settings.refresh_token_ttl
    )


async def refresh_session(work: IdentityWork, presented: str) -> Tokens | None:
    """Rotate a refresh token (`rotate_refresh_token`) in the request's transaction.

    None when the token had been used already: its family is revoked, and the route must
    answer 401 without raising, so that the revocation commits.
    """
    return await rotate_refresh_token(
        await work.session(), work.issuer, presented, work.settings.refresh_token_ttl
    )


async def register_user(
    session: WriteSession,
    passwords: Passwords,
    *,
    email: str,
    password: str,
    name: str,
    role: str = CUSTOMER,
) -> User:
    """Create a user; Conflict when the email (compared case-insensitively) is taken."""
    key = email_key(email)
    taken = await session.scalar(select(func.count()).where(User.email_key == key))
    if taken:
        raise Conflict("An account with this email already exists")
    user = User(
        id=new_id(),
        email=email.strip(),
        email_key=key,
        name=name.strip(),
        password_hash=await passwords.hash(password),
        role=role,
        created_at=utcnow(),
    )
    session.add(user)
    outbox.add(
        session, UserRegistered(user_id=user.id, email=user.email, name=user.name, role=role)
    )
    return user


async def authenticate(
    session: ReadSession, passwords: Passwords, email: str, password: str
) -> User | None:
    user = await session.scalar(select(User).where(User.email_key == email_key(email)))
    ok = await passwords.verify(user.password_hash if user else None, password)
    return user if ok else None


async def start_session(
    session: WriteSession, issuer: TokenIssuer, user: User, refresh_ttl: int
) -> Tokens:
    """Open a new refresh-token family for a login and issue its first pair."""
    family = RefreshTokenFamily(id=new_id(), user_id=user.id, created_at=utcnow())
    session.add(family)
    await session.flush()  # the family's row before its first token's (a foreign key)
    return await _issue_pair(session, issuer, user, family.id, refresh_ttl)


async def rotate_refresh_token(
    session: WriteSession, issuer: TokenIssuer, presented: str, refresh_ttl: int
) -> Tokens | None:
    """Exchange a refresh token for a new pair.

    Returns None when the token had been used already: its family is now revoked, and the
    caller must commit that before refusing the request.
    """
    token, family = await _find(session, presented)
    now = utcnow()
    if family.revoked_at is not None or token.expires_at <= now:
        raise Unauthorized("The refresh token is no longer valid")
    marked = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == token.id, RefreshToken.used_at.is_(None))
        .values(used_at=now)
    )
    if rows_matched(marked) == 0:
        family.revoked_at = now
        return None
    user = await session.get_one(User, family.user_id)
    return await _issue_pair(session, issuer, user, family.id, refresh_ttl)


async def revoke_family_of(session: WriteSession, presented: str) -> None:
    _token, family = await _find(session, presented)
    if family.revoked_at is None:
        family.revoked_at = utcnow()


async def get_user(session: ReadSession, user_id: str) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("No such user")
    return user


async def _issue_pair(
    session: WriteSession, issuer: TokenIssuer, user: User, family_id: str, refresh_ttl: int
) -> Tokens:
    now = utcnow()
    secret = secrets.token_urlsafe(32)
    token = RefreshToken(
        id=new_id(),
        family_id=family_id,
        secret_hash=_digest(secret),
        issued_at=now,
        expires_at=now + timedelta(seconds=refresh_ttl),
    )
    session.add(token)
    return Tokens(
        access_token=issuer.issue(user.id, user.role),
        refresh_token=f"{token.id}.{secret}",
        expires_in=issuer.ttl_seconds,
    )


async def _find(session: WriteSession, presented: str) -> tuple[RefreshToken, RefreshTokenFamily]:
    token_id, _, secret = presented.partition(".")
    token = await session.get(RefreshToken, token_id) if secret else None
    if token is None or not hmac.compare_digest(token.secret_hash, _digest(secret)):
        raise Unauthorized("The refresh token is not valid")
    family = await session.get_one(RefreshTokenFamily, token.family_id)
    return token, family


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
