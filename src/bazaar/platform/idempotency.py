"""`Idempotency-Key`: a replay of the same request returns the original response.

The key is claimed in its own short transaction, so a second request with the same key while
the first is still in flight sees the claim (409) instead of waiting for it. The work and the
stored response then commit together: a response is stored if and only if its effect is.
With Redis, a copy of the claim and of the stored response lets every instance answer a
replay or an in-flight duplicate without a database round trip (`idempotency_cache`).
"""

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from cashews import Cache
from litestar.params import HeaderParameter
from sqlalchemy import delete, select, update

from bazaar.platform.clock import utcnow
from bazaar.platform.db import Database, WriteSession, insert_ignoring_duplicates
from bazaar.platform.errors import BadRequest, Conflict, Unprocessable
from bazaar.platform.idempotency_cache import Known, SharedClaims
from bazaar.platform.schema import idempotency_record

HEADER = "Idempotency-Key"
#: A claim older than this whose request never finished (the process died) may be taken over.
ABANDONED_AFTER = timedelta(seconds=60)

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
        so that the client may retry with the same key.
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
            async with db.write() as session:
                stored = await _claim(session, scope, key, request_fingerprint)
        except BaseException:
            if shared is not None:
                await shared.release(scope, key)
            raise
        if stored is None:
            try:
                stored = await _run(db, scope, key, work)
            except BaseException:
                if shared is not None:
                    await shared.release(scope, key)
                raise
        if self.shared is not None:  # also a replay the database had and Redis had lost
            await self.shared.store(scope, key, request_fingerprint, stored.status, stored.body)
        return stored


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
    try:
        async with db.write() as session:
            status, body = await work(session)
            await session.execute(
                update(idempotency_record)
                .where(idempotency_record.c.scope == scope, idempotency_record.c.key == key)
                .values(response_status=status, response_body=body, completed_at=utcnow())
            )
    except BaseException:
        async with db.write() as session:
            await session.execute(
                delete(idempotency_record).where(
                    idempotency_record.c.scope == scope,
                    idempotency_record.c.key == key,
                    idempotency_record.c.response_status.is_(None),
                )
            )
        raise
    return StoredResponse(status, body, replayed=False)


async def _claim(
    session: WriteSession, scope: str, key: str, request_fingerprint: str
) -> StoredResponse | None:
    now = utcnow()
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
