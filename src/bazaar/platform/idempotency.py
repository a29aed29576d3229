"""`Idempotency-Key`: a replay of the same request returns the original response.

The key is claimed in its own short transaction, so a second request with the same key while
the first is still in flight sees the claim (409) instead of waiting for it. The work and the
stored response then commit together: a response is stored if and only if its effect is.
With Redis, a copy of the claim and of the stored response lets every instance answer a
replay or an in-flight duplicate without a database round trip (`idempotency_cache`).
"""

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from cashews import Cache
from litestar.params import HeaderParameter
from sqlalchemy import delete, select, update

from bazaar.platform.clock import utcnow
from bazaar.platform.db import Database, WriteSession, insert_ignoring_duplicates
from bazaar.platform.errors import BadRequest, BazaarError, Conflict, Unprocessable
from bazaar.platform.idempotency_cache import Known, SharedClaims
from bazaar.platform.observability import log
from bazaar.platform.schema import idempotency_record
from bazaar.platform.transient import is_transient

HEADER = "Idempotency-Key"
#: A claim older than this whose request never finished (the process died) may be taken over.
ABANDONED_AFTER = timedelta(seconds=60)
RELEASE_WAIT = 0.5
"""Seconds a failed request waits for its claim's release before answering (see _release)."""

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
        self.shared = SharedClaims(shared, ABANDONED_AFTER) if shared is not None else None
        self._releases: set[asyncio.Task] = set()

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
        first request with the key is still in flight. When `work` fails, the claim is released
        so that the client may retry with the same key; when the database that holds the claim
        is what failed, the release is retried in the background until it is back (see
        `_release`), so a first attempt that got a 503 does not lock out its own retries.
        """
        shared = self.shared
        if shared is not None and not await shared.claim(scope, key, request_fingerprint):
            # Taken: answer from Redis. Nothing there (Redis down, or the entry just expired)?
            # The database decides.
            stored = _answer(await shared.known(scope, key), request_fingerprint)
            if stored is not None:
                return stored
            shared = None
        claimed_at = utcnow()  # also the claim's owner: a release removes only its own claim
        try:
            async with db.write() as session:
                stored = await _claim(session, scope, key, request_fingerprint, claimed_at)
        except BaseException as error:
            # A claim whose commit was cut off may have committed all the same.
            claim_may_exist = not isinstance(error, BazaarError)
            await self._release(db, scope, key, claimed_at if claim_may_exist else None, shared)
            raise
        if stored is None:
            try:
                stored = await _run(db, scope, key, work)
            except BaseException:
                await self._release(db, scope, key, claimed_at, shared)
                raise
        if self.shared is not None:  # also a replay the database had and Redis had lost
            await self.shared.store(scope, key, request_fingerprint, stored.status, stored.body)
        return stored

    async def _release(
        self,
        db: Database,
        scope: str,
        key: str,
        claimed_at: datetime | None,
        shared: SharedClaims | None,
    ) -> None:
        """Remove this request's claim (made at `claimed_at`, if any) from the database, then
        from Redis. Waits `RELEASE_WAIT` seconds at most: if the database is down, the release
        goes on in the background, retried with backoff, until it is done or the claim is old
        enough to be taken over anyway. A cancelled request still releases its claim."""
        task = asyncio.create_task(_release_claim(db, scope, key, claimed_at, shared))
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)
        await asyncio.wait({task}, timeout=RELEASE_WAIT)


async def _release_claim(
    db: Database,
    scope: str,
    key: str,
    claimed_at: datetime | None,
    shared: SharedClaims | None,
) -> None:
    delay = 0.05
    deadline = time.monotonic() + ABANDONED_AFTER.total_seconds()
    while claimed_at is not None:
        try:
            async with db.write() as session:
                await session.execute(
                    delete(idempotency_record).where(
                        idempotency_record.c.scope == scope,
                        idempotency_record.c.key == key,
                        idempotency_record.c.created_at == claimed_at,
                        idempotency_record.c.response_status.is_(None),
                    )
                )
            break
        except Exception as error:
            if not is_transient(error) or time.monotonic() + delay > deadline:
                log.warning("idempotency_claim_not_released", scope=scope, error=repr(error))
                break
            await asyncio.sleep(delay)
            delay = min(1.0, delay * 2)
    if shared is not None:
        await shared.release(scope, key)


def _answer(known: Known | None, request_fingerprint: str) -> StoredResponse | None:
    if known is None:
        return None
    if known.fingerprint != request_fingerprint:
        raise Unprocessable(f"This {HEADER} was already used with a different request")
    if known.in_flight:
        raise Conflict(f"A request with this {HEADER} is still in flight; retry later")
    assert known.status is not None and known.body is not None
    return StoredResponse(known.status, known.body, replayed=True)


async def _run(db: Database, scope: str, key: str, work: Work) -> StoredResponse:
    async with db.write() as session:
        status, body = await work(session)
        await session.execute(
            update(idempotency_record)
            .where(idempotency_record.c.scope == scope, idempotency_record.c.key == key)
            .values(response_status=status, response_body=body, completed_at=utcnow())
        )
    return StoredResponse(status, body, replayed=False)


async def _claim(
    session: WriteSession, scope: str, key: str, request_fingerprint: str, now: datetime
) -> StoredResponse | None:
    claimed = await insert_ignoring_duplicates(
        session,
        idempotency_record,
        scope=scope,
        key=key,
        fingerprint=request_fingerprint,
        created_at=now,
    )
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
        raise Conflict(f"A request with this {HEADER} is still in flight; retry later")
    await session.execute(
        update(idempotency_record)
        .where(idempotency_record.c.scope == scope, idempotency_record.c.key == key)
        .values(created_at=now)
    )
    return None
