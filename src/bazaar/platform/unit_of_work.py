"""A request's unit of work: its reads, and the one write transaction that its use case begins
when it is ready; the edge commits it once the route has answered, or rolls it back.

Routes receive it, or only its write or read session, by dependency injection: a service's
router provides `work`, `session` and `reader` with `provide_work`, `provide_session` and
`provide_reader`, each on the database the request concerns (orders: the shard its caller or its
path names). Each provider is a generator dependency. Litestar (2.x, `HTTPRoute`) runs what
follows its `yield` once the route has returned and its response is built (encoded), before the
response is sent, and throws the route's error in at the `yield` instead. So a request whose
commit fails is answered with that error, never with a 2xx, and an idempotent request's
response is stored in the transaction of its effect (`platform.idempotency`).

A route is given one of them besides its caller, and each provider takes the caller (`user`,
None on a public route; keys and shards are the caller's), so that Litestar resolves the two
one after the other. Dependencies that do not depend on one another are resolved in an anyio
task group, which costs some 60 µs a request; and Litestar finishes several generator
dependencies in a task group too, where a failed commit would become an `ExceptionGroup`.
"""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

from litestar import Request
from litestar.di import NamedDependency, Provide

from bazaar.platform.auth import Principal
from bazaar.platform.db import Database, ReadSession, WriteSession
from bazaar.platform.idempotency import OPTION, Claim, Idempotency, Replayed, StoredResponse
from bazaar.platform.observability import log

T = TypeVar("T")
W = TypeVar("W", bound="UnitOfWork")

AnyRequest = Request[Any, Any, Any]
Caller = NamedDependency[Principal | None]
"""Who is calling: None on a public route (see `web.current_user`)."""
Transaction = NamedDependency[WriteSession]
"""A route's parameter `session: Transaction`: the request's write transaction."""
ReadOnly = NamedDependency[ReadSession]
"""A route's parameter `reader: ReadOnly`: a read-only transaction of the request."""
DatabaseOf = Callable[[AnyRequest, Caller], Database]
"""Which database a request concerns (one per service; an order shard for orders)."""
Committed = Callable[[AnyRequest], Awaitable[None]]
"""What a service does once a request's transaction has committed, before it answers."""


class UnitOfWork:
    """One request's work on `db`.

    Reads go where `Database.read` sends them (a replica when one may serve). The write
    transaction begins at the first `session()`, so that a use case may first ask another
    service (the catalog's prices) without holding a connection of its own database; the edge
    commits it when the route has answered and rolls it back when anything raised. With a
    `claim` (a route that switched idempotency on), claiming the key is the transaction's first
    statement and storing the response its last.
    """

    def __init__(self, db: Database, *, claim: Claim | None = None) -> None:
        self.db = db
        self.claim = claim
        self._transaction: AbstractAsyncContextManager[WriteSession] | None = None
        self._session: WriteSession | None = None

    @property
    def idempotency_key(self) -> str | None:
        """The request's `Idempotency-Key`, on a route that switched idempotency on."""
        return None if self.claim is None else self.claim.key

    def read(self, *, fresh: bool = False) -> AbstractAsyncContextManager[ReadSession]:
        """A read-only transaction, as `Database.read` gives it."""
        return self.db.read(fresh=fresh)

    async def read_by_id(self, load: Callable[[ReadSession], Awaitable[T]]) -> T:
        """`load` something named by id, as `Database.read_by_id` does."""
        return await self.db.read_by_id(load)

    async def session(self) -> WriteSession:
        """The request's write transaction on the primary, begun by the first call.

        Raises `Replayed` when the request's key already has its response, Unprocessable or
        Conflict when it was used with another request or is still in flight.
        """
        if self._session is None:
            transaction = self.db.write()
            session = await transaction.__aenter__()
            self._transaction, self._session = transaction, session
            if self.claim is not None:
                stored = await self.claim.claim(session, self.db.dialect)
                if stored is not None:
                    raise Replayed(stored)
        return self._session

    async def _commit(self) -> StoredResponse | None:
        """Store the response of an idempotent request, then commit; what was stored."""
        stored = None
        if self.claim is not None:
            session = await self.session()  # a request with a key always has its transaction
            if self.claim.response is None:
                raise RuntimeError("an idempotent route must return data, not a Response")
            stored = await self.claim.record(session, *self.claim.response)
        transaction, self._transaction = self._transaction, None
        if transaction is not None:
            await transaction.__aexit__(None, None, None)
        return stored

    async def _roll_back(self, error: BaseException) -> None:
        transaction, self._transaction = self._transaction, None
        if transaction is None:
            return
        try:
            await transaction.__aexit__(type(error), error, error.__traceback__)
        except Exception as failure:  # the request's own error is the one to answer with
            log.warning("rollback_failed", error_type=type(failure).__name__)


@asynccontextmanager
async def at_edge(work: UnitOfWork) -> AsyncIterator[None]:
    """Commit `work` when the block ends without an error, else roll it back; around it, the
    claim of an idempotent request (answered before any work when Redis knows the key)."""
    claim = work.claim
    if claim is not None:
        known = await claim.answer_known()
        if known is not None:
            raise Replayed(known)
    try:
        yield
    except Replayed as replay:  # the database had the response: nothing of this request stays
        await work._roll_back(replay)
        if claim is not None:
            await claim.stored(replay.stored)
        raise
    except BaseException as error:
        await work._roll_back(error)
        if claim is not None:
            await claim.release()
        raise
    try:
        stored = await work._commit()
    except BaseException:
        if claim is not None:
            await claim.release()
        raise
    if claim is not None and stored is not None:
        await claim.stored(stored)


ADMIN_ONLY = "admin_only"
"""A route's `opt` key: only an admin may call it, checked before its idempotency key."""


def admin_only() -> dict[str, bool]:
    """The `opt` of a route only an admin may call: 403 comes before any other check."""
    return {ADMIN_ONLY: True}


async def _claim(
    idempotency: Idempotency | None, request: AnyRequest, user: Caller
) -> Claim | None:
    if user is not None and request.route_handler.opt.get(ADMIN_ONLY):
        user.require_admin()  # a customer learns nothing of keys: 403, as before any work
    if idempotency is not None:
        return await idempotency.claim_for(request, user)
    if OPTION in request.route_handler.opt:
        raise RuntimeError(f"{request.url.path} is idempotent, but its service has no keys")
    return None


def provide_work(
    make: Callable[[AnyRequest, Caller, Claim | None], W],
    idempotency: Idempotency | None = None,
) -> Provide:
    """`work`: the request's unit of work, as `make` builds it (a service's own, which also
    holds what its use cases call: the catalog's prices, the payment provider)."""

    async def work(request: AnyRequest, user: Caller) -> AsyncIterator[W]:
        unit = make(request, user, await _claim(idempotency, request, user))
        async with at_edge(unit):
            yield unit

    return Provide(work)


def provide_session(
    database: DatabaseOf,
    idempotency: Idempotency | None = None,
    committed: Committed | None = None,
) -> Provide:
    """`session`: the request's write transaction, begun before the route runs; `committed`
    runs once it has committed."""

    async def session(request: AnyRequest, user: Caller) -> AsyncIterator[WriteSession]:
        claim = await _claim(idempotency, request, user)
        unit = UnitOfWork(database(request, user), claim=claim)
        async with at_edge(unit):
            yield await unit.session()
        if committed is not None:
            await committed(request)

    return Provide(session)


def provide_reader(database: DatabaseOf) -> Provide:
    """`reader`: a read-only transaction, on a replica when one may serve (`Database.read`)."""

    async def reader(request: AnyRequest, user: Caller) -> AsyncIterator[ReadSession]:
        async with database(request, user).read() as session:
            yield session

    return Provide(reader)
