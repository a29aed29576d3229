"""`Idempotency-Key`: a replay of the same request returns the original response.

A route switches it on with `opt=idempotent("<scope>")`; the request's unit of work
(`platform.unit_of_work`) then runs its `Claim`, and the route itself says nothing more (it
returns data, which the edge encodes and hands over with `keep_response`).
Keys are the caller's (`<scope>:<user id>`); a request is told apart by its method, path and
raw body (`fingerprint`).

The key's claim, the work and the stored response are one transaction: a response is stored
if and only if its effect is, and a request that fails, or whose process dies, leaves no claim
behind (its transaction rolls back, on a crash as soon as the database sees the connection
drop), so its retry runs at once. A second request with the same key while the first is in
flight waits `CLAIM_WAIT` at most for the first's claim row (on PostgreSQL), then gets 409;
on SQLite writes take turns, so it waits for the first and replays its response.
With Redis, a copy of the claim (for `CLAIM_TTL`) and of the stored response lets every
instance answer a replay or an in-flight duplicate without a database round trip
(`idempotency_cache`), before the request does any work.
"""

import contextlib
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cashews import Cache
from litestar import Request
from sqlalchemy import bindparam, select, text, update
from sqlalchemy.exc import DBAPIError

from bazaar.platform.auth import Principal
from bazaar.platform.clock import utcnow
from bazaar.platform.db import WriteSession
from bazaar.platform.errors import BadRequest, Conflict, Unprocessable
from bazaar.platform.idempotency_cache import Known, SharedClaims
from bazaar.platform.postgres import lock_timeout_setting
from bazaar.platform.queries import Query
from bazaar.platform.schema import idempotency_record
from bazaar.platform.statements import insert_ignoring_duplicates, run
from bazaar.platform.transient import sqlstate

HEADER = "Idempotency-Key"
HEADER_DESCRIPTION = "Required, 1..255 characters; a replay returns the original response."
OPTION = "idempotent"
"""The route option that switches a route's idempotency on; its value is the keys' scope."""
ABANDONED_AFTER = timedelta(seconds=60)
"""A claim committed without its response (written by a release before claims and work were
one transaction) is taken over only this long after it was made."""
CLAIM_WAIT_MS = 200
"""How long a duplicate waits for the first request's claim row before its 409."""
CLAIM_TTL = timedelta(seconds=5)
"""How long Redis answers "in flight" for a claim: a process that died in the middle of a
request cannot release its copy, and after this the database, which knows, decides."""
LOCK_NOT_AVAILABLE = "55P03"
_CLAIM = "bazaar_idempotency_claim"
"""Where a request keeps its claim, for `keep_response`."""


def idempotent(scope: str) -> dict[str, str]:
    """The `opt` of a route whose requests need an `Idempotency-Key`, scoped per caller."""
    return {OPTION: scope}


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: bytes
    replayed: bool


class Replayed(Exception):
    """A request whose key was used before for the same request: its stored response is the
    answer, sent again with `Idempotent-Replayed: true` (the edge's exception handler)."""

    def __init__(self, stored: StoredResponse) -> None:
        super().__init__(f"replayed with status {stored.status}")
        self.stored = stored


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


class Claim:
    """One request's use of its key, in the order a request goes through it:

    1. `answer_known` before any work: claim the key on Redis, or answer from what Redis knows
       (the stored response, or 422/409); None when the request goes on.
    2. `claim` first thing in the request's transaction: the stored response when the database
       has one, 422 or 409 as above, else the key is claimed until that transaction ends.
    3. `record` the response in that transaction, just before it commits.
    4. `stored` once committed (or replayed from the database): a copy for Redis; or `release`
       Redis's claim when the request failed, so that its retry runs at once.
    """

    def __init__(
        self, shared: SharedClaims | None, scope: str, key: str, request_fingerprint: str
    ) -> None:
        self.shared = shared
        self.scope = scope
        self.key = key
        self.fingerprint = request_fingerprint
        self.response: tuple[int, bytes] | None = None
        """The status and body of the response to store, once the route has answered."""
        self._holds_shared = False

    async def answer_known(self) -> StoredResponse | None:
        shared = self.shared
        if shared is None:
            return None
        if await shared.claim(self.scope, self.key, self.fingerprint):
            self._holds_shared = True
            return None
        # Taken: answer from Redis. Nothing there (Redis down, or the entry just expired)?
        # The database decides.
        return _answer(await shared.known(self.scope, self.key), self.fingerprint)

    async def claim(self, session: WriteSession, dialect: str) -> StoredResponse | None:
        return await _claim(session, dialect, self.scope, self.key, self.fingerprint, utcnow())

    async def record(self, session: WriteSession, status: int, body: bytes) -> StoredResponse:
        params = {"scope": self.scope, "key": self.key, "status": status, "body": body}
        await run(session, _RECORD, {**params, "now": utcnow()})
        return StoredResponse(status, body, replayed=False)

    async def stored(self, response: StoredResponse) -> None:
        if self.shared is not None:  # also a replay the database had and Redis had lost
            await self.shared.store(
                self.scope, self.key, self.fingerprint, response.status, response.body
            )

    async def release(self) -> None:
        if self.shared is not None and self._holds_shared:
            with contextlib.suppress(Exception):  # else its copy lapses after CLAIM_TTL
                await self.shared.release(self.scope, self.key)


def keep_response(request: Request[Any, Any, Any], status: int, body: bytes) -> None:
    """Hand the response of an idempotent request to its claim, which stores it with the
    request's effect (the edge calls this as it encodes a response)."""
    if OPTION in request.route_handler.opt:
        claim: Claim | None = request.state.get(_CLAIM)
        if claim is not None:
            claim.response = (status, body)


class Idempotency:
    """Runs requests at most once per key; `shared` (Redis) answers what it knows first."""

    def __init__(self, shared: Cache | None = None) -> None:
        self.shared = SharedClaims(shared, CLAIM_TTL) if shared is not None else None

    def claim(self, scope: str, key: str, request_fingerprint: str) -> Claim:
        return Claim(self.shared, scope, key, request_fingerprint)

    async def claim_for(
        self, request: Request[Any, Any, Any], caller: Principal | None
    ) -> Claim | None:
        """The claim of a request to a route that switched idempotency on (kept with the
        request for `keep_response`), else None.

        Raises BadRequest for a missing or over-long key. The key belongs to the caller: an
        idempotent route is one that authenticates (`user: CurrentUser`).
        """
        options: Mapping[str, Any] = request.route_handler.opt
        scope = options.get(OPTION)
        if scope is None:
            return None
        if caller is None:
            raise RuntimeError(f"the idempotent route {request.url.path} needs a signed-in user")
        key = check_key(request.headers.get(HEADER))
        body = await request.body()
        request_fingerprint = fingerprint(request.method, request.url.path, body)
        claim = self.claim(f"{scope}:{caller.id}", key, request_fingerprint)
        request.state[_CLAIM] = claim
        return claim


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


_RECORD = Query(
    update(idempotency_record)
    .where(
        idempotency_record.c.scope == bindparam("scope"),
        idempotency_record.c.key == bindparam("key"),
    )
    .values(
        response_status=bindparam("status"),
        response_body=bindparam("body"),
        completed_at=bindparam("now"),
    )
)


def _in_flight() -> Conflict:
    return Conflict(f"A request with this {HEADER} is still in flight; retry later")
