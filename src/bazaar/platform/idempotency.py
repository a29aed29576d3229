"""`Idempotency-Key`: a replay of the same request returns the original response.

The key's claim, the work and the stored response are one transaction: a response is stored
if and only if its effect is, and a request that fails, or whose process dies, leaves no claim
behind (its transaction rolls back, on a crash as soon as the database sees the connection
drop), so its retry runs at once. A second request with the same key while the first is in
flight waits `CLAIM_WAIT` at most for the first's claim row (on PostgreSQL), then gets 409;
on SQLite writes take turns, so it waits for the first and replays its response.
With Redis, a copy of the claim (for `CLAIM_TTL`) and of the stored response lets every
instance answer a replay or an in-flight duplicate without a database round trip
(`idempotency_cache`).
"""

import contextlib
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from cashews import Cache
from litestar.params import HeaderParameter
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError

from bazaar.platform.clock import utcnow
from bazaar.platform.db import Database, WriteSession, insert_ignoring_duplicates
from bazaar.platform.errors import BadRequest, Conflict, Unprocessable
from bazaar.platform.idempotency_cache import Known, SharedClaims
from bazaar.platform.postgres import lock_timeout_setting
from bazaar.platform.schema import idempotency_record
from bazaar.platform.transient import sqlstate

HEADER = "Idempotency-Key"
ABANDONED_AFTER = timedelta(seconds=60)
"""A claim committed without its response (written by a release before claims and work were
one transaction) is taken over only this long after it was made."""
CLAIM_WAIT_MS = 200
"""How long a duplicate waits for the first request's claim row before its 409."""
CLAIM_TTL = timedelta(seconds=5)
"""How long Redis answers "in flight" for a claim: a process that died in the middle of a
request cannot release its copy, and after this the database, which knows, decides."""
LOCK_NOT_AVAILABLE = "55P03"

KeyHeader = Annotated[
    str | None,
    HeaderParameter(
        name=HEADER,
        # Required in the documentation; a missing or over-long key is a 400 from `check_key`.
        required=True,
        description="Required, 1..255 characters; a replay returns the original response.",
    ),
]
"""The route parameter of the `Idempotency-Key` header; pass its value to `check_key`."""


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: bytes
    replayed: bool


def check_key(key: str | None) -> str:
    if key is None:
        raise BadRequest(f"The {HEADER} header is required for this request")
    if not 1 <= len(key) <= 255:
        raise BadRequest(f"The {HEADER} header must be 1 to 255 characters")
    return key


def fingerprint(*parts: bytes | str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()


Work = Callable[[WriteSession], Awaitable[tuple[int, bytes]]]


class Idempotency:
    """Runs requests at most once per key; `shared` (Redis) answers what it knows first."""

    def __init__(self, shared: Cache | None = None) -> None:
        self.shared = SharedClaims(shared, CLAIM_TTL) if shared is not None else None

    async def replay(self, scope: str, key: str, request_fingerprint: str) -> StoredResponse | None:
        """The stored response if Redis has it (no database round trip), else None.

        Raises as `run_once` does when Redis knows the key was used with another request or is
        still in flight. A route calls this first when it has work to do before `run_once`.
        """
        if self.shared is None:
            return None
        return _answer(await self.shared.known(scope, key), request_fingerprint)

    async def run_once(
        self, db: Database, scope: str, key: str, request_fingerprint: str, work: Work
    ) -> StoredResponse:
        """Run `work` at most once for (`scope`, `key`), or replay the response it gave.

        Raises Unprocessable when the key was used with another request, Conflict while the
        first request with the key is still in flight. When `work` fails, nothing of it stays,
        the claim included, so the client may retry with the same key at once.
        """
        shared = self.shared
        if shared is not None and not await shared.claim(scope, key, request_fingerprint):
            # Taken: answer from Redis. Nothing there (Redis down, or the entry just expired)?
            # The database decides.
            stored = _answer(await shared.known(scope, key), request_fingerprint)
            if stored is not None:
                return stored
            shared = None
        try:
            stored = await _claim_and_run(db, scope, key, request_fingerprint, work)
        except BaseException:
            if shared is not None:
                with contextlib.suppress(Exception):  # else its copy lapses after CLAIM_TTL
                    await shared.release(scope, key)
            raise
        if self.shared is not None:  # also a replay the database had and Redis had lost
            await self.shared.store(scope, key, request_fingerprint, stored.status, stored.body)
        return stored


async def _claim_and_run(
    db: Database, scope: str, key: str, request_fingerprint: str, work: Work
) -> StoredResponse:
    async with db.write() as session:
        stored = await _claim(session, db.dialect, scope, key, request_fingerprint, utcnow())
        if stored is not None:
            return stored
        status, body = await work(session)
        await session.execute(
            update(idempotency_record)
            .where(idempotency_record.c.scope == scope, idempotency_record.c.key == key)
            .values(response_status=status, response_body=body, completed_at=utcnow())
        )
    return StoredResponse(status, body, replayed=False)


def _answer(known: Known | None, request_fingerprint: str) -> StoredResponse | None:
    if known is None:
        return None
    if known.fingerprint != request_fingerprint:
        raise Unprocessable(f"This {HEADER} was already used with a different request")
    if known.in_flight:
        raise _in_flight()
    assert known.status is not None and known.body is not None
    return StoredResponse(known.status, known.body, replayed=True)


async def _claim(
    session: WriteSession,
    dialect: str,
    scope: str,
    key: str,
    request_fingerprint: str,
    now: datetime,
) -> StoredResponse | None:
    """Claim the key in `session`'s transaction; the stored response when there is one.

    A first request's claim row is not committed until its work is: a duplicate's insert
    waits for it, `CLAIM_WAIT_MS` at most, then is told the first is in flight."""
    if dialect == "postgresql":
        await session.execute(text(f"SET LOCAL lock_timeout = {CLAIM_WAIT_MS}"))
    try:
        claimed = await insert_ignoring_duplicates(
            session,
            idempotency_record,
            scope=scope,
            key=key,
            fingerprint=request_fingerprint,
            created_at=now,
        )
    except DBAPIError as error:
        if sqlstate(error) == LOCK_NOT_AVAILABLE:
            raise _in_flight() from None
        raise
    if dialect == "postgresql":
        await session.execute(text(f"SET LOCAL lock_timeout = {lock_timeout_setting()}"))
    if claimed:
        return None
    record = (
        await session.execute(
            select(idempotency_record).where(
                idempotency_record.c.scope == scope, idempotency_record.c.key == key
            )
        )
    ).one()
    if record.fingerprint != request_fingerprint:
        raise Unprocessable(f"This {HEADER} was already used with a different request")
    if record.response_status is not None:
        return StoredResponse(record.response_status, record.response_body, replayed=True)
    if now - record.created_at < ABANDONED_AFTER:
        raise _in_flight()
    await session.execute(
        update(idempotency_record)
        .where(idempotency_record.c.scope == scope, idempotency_record.c.key == key)
        .values(created_at=now)
    )
    return None


def _in_flight() -> Conflict:
    return Conflict(f"A request with this {HEADER} is still in flight; retry later")
