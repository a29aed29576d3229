"""`Idempotency-Key`: a replay of the same request returns the original response.

The key is claimed in its own short transaction, so a second request with the same key while
the first is still in flight sees the claim (409) instead of waiting for it. The work and the
stored response then commit together: a response is stored if and only if its effect is.
"""

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from litestar.params import HeaderParameter
from sqlalchemy import delete, select, update

from bazaar.platform.clock import utcnow
from bazaar.platform.db import Database, WriteSession, insert_ignoring_duplicates
from bazaar.platform.errors import BadRequest, Conflict, Unprocessable
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


async def run_once(
    db: Database, scope: str, key: str, request_fingerprint: str, work: Work
) -> StoredResponse:
    """Run `work` at most once for (`scope`, `key`), or replay the response it gave.

    Raises Unprocessable when the key was used with another request, Conflict while the first
    request with the key is still in flight. When `work` fails, the claim is released so that
    the client may retry with the same key.
    """
    async with db.write() as session:
        stored = await _claim(session, scope, key, request_fingerprint)
    if stored is not None:
        return stored
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
