"""The runtime of a process: every service in one (`bazaar dev`, and the app the test suite
drives), or one service's API or worker (`bazaar serve`, `bazaar worker`: see processes)."""

import asyncio
import functools
import threading
from collections.abc import Collection, Iterator

from litestar.types import ASGIApp
from sqlalchemy.exc import TimeoutError as PoolTimeout

from bazaar.orders.catalog_http import HttpCatalogPrices
from bazaar.orders.prices import CatalogPrices
from bazaar.platform import migrations
from bazaar.platform.bus import Subscription
from bazaar.platform.db import Database
from bazaar.platform.observability import configure_logging, log
from bazaar.platform.outbox import OutboxRelay
from bazaar.platform.parts import Loop
from bazaar.platform.postgres import ensure_database
from bazaar.platform.settings import SettingsError
from bazaar.platform.tracing import start_tracing
from bazaar.platform.web import BackgroundCheck, create_app
from bazaar.runtime.assemble import assemble
from bazaar.runtime.catalog_prices import EmbeddedCatalogPrices
from bazaar.runtime.config import ProcessKind, Settings
from bazaar.runtime.documents import api_document
from bazaar.runtime.lifetime import Drain, die_with_parent, freeze_what_started
from bazaar.runtime.platform import Platform, build_platform, require_servers
from bazaar.runtime.services import SERVICES

CATALOG_URL_NEEDED = (
    "orders serves its API without catalog in this process: set the base URL of the catalog"
    " service (or of its load balancer)"
)
STOP_TIMEOUT = 5.0
"""How long stopping waits for a cancelled background task before giving up on it."""


class Runtime:
    """The platform, the services on it, and what this kind of process runs of them.

    `dev` runs everything; `serve` only the routes (and the broadcasts that keep its caches
    fresh); `worker` the outbox relay, the consumers and the background loops, no routes.
    """

    def __init__(self, settings: Settings, services: Collection[str] | None = None) -> None:
        self.settings = settings
        self.kind = settings.process.kind
        self.services = tuple(services) if services is not None else SERVICES
        self.platform: Platform = build_platform(
            settings.platform,
            settings.process.pool,
            settings.process.consumer_concurrency,
            signs="identity" in self.services,
        )
        self.tracing = start_tracing(
            settings.platform.tracing,
            "bazaar" if len(self.services) > 1 else f"bazaar-{self.services[0]}",
            self.kind.value,
            self.platform.all_databases(),
        )
        self.prices = self._catalog_prices()
        parts = assemble(self.platform, settings, self.prices)
        self.parts = [part for part in parts if part.name in self.services]
        unique = {id(db): db for part in self.parts for db in part.databases}
        self.databases: list[Database] = list(unique.values())
        self._tasks: list[asyncio.Future[None]] = []
        self._subscribed = list(self._subscriptions())
        for subscription in self._subscribed:
            self.platform.bus.subscribe(subscription)
        for part in self.parts:
            self.platform.bus.retire(part.retired_consumers)
        self._bus_started = False
        self.relay = OutboxRelay(self.databases, self.platform.bus)

    def _subscriptions(self) -> Iterator[Subscription]:
        for part in self.parts:
            for subscription in part.subscriptions:
                # an API keeps only the broadcasts (its caches); a worker all but those
                wanted = subscription.is_broadcast == (self.kind is ProcessKind.SERVE)
                if wanted or self.kind is ProcessKind.DEV:
                    yield subscription

    def _catalog_prices(self) -> CatalogPrices:
        """Catalog's database when catalog runs here (or could: `dev`), else its HTTP API."""
        url = self.settings.orders.catalog_url
        remote = "orders" in self.services and "catalog" not in self.services
        if remote and self.kind is ProcessKind.SERVE:
            if url is None:
                raise SettingsError("CATALOG_URL", CATALOG_URL_NEEDED)
            orders = self.settings.orders
            return HttpCatalogPrices(
                url, timeout=orders.catalog_timeout, recent_seconds=orders.cart_quote_seconds
            )
        # A worker serves no route, so it never quotes; dev has catalog's database at hand.
        return EmbeddedCatalogPrices(self.platform.databases["catalog"])

    async def migrate(self) -> None:
        """Create missing databases (PostgreSQL) and migrate every one, shards included; with
        RabbitMQ, declare every consumer's queue, so events published before it first runs
        wait for it, and move what the queues of retired consumer names hold to their
        successors'."""
        await require_servers(self.platform)
        for part in self.parts:
            for db in part.databases:
                if db.dialect == "postgresql":
                    await ensure_database(db.primary.url)
                await migrations.upgrade(db, part.schema)
        subscriptions = (s for part in self.parts for s in part.subscriptions)
        await self.platform.bus.declare_queues(subscriptions)

    async def start(self) -> None:
        await self._check_redis()
        await self.migrate()
        if self.kind is not ProcessKind.SERVE or self._subscribed:
            await self.platform.bus.start()
            self._bus_started = True
        # every kind reads, each from its own services' databases only
        loops: list[Loop] = [
            db.replicas.monitor for db in self.databases if db.replicas is not None
        ]
        if self.kind is not ProcessKind.SERVE:
            poll = self.settings.process.relay_poll_interval
            loops += [
                functools.partial(self.relay.run, poll),
                *(loop for part in self.parts for loop in part.background),
            ]
        self._tasks = [asyncio.ensure_future(loop()) for loop in loops]
        log.info("bazaar_started", kind=self.kind.value, services=list(self.services))

    async def stop(self) -> None:
        """Stop the background tasks, let the bus's running handlers finish (bounded), then
        close every connection."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _done, stuck = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT)
            for task in stuck:
                log.error("background_task_did_not_stop", task=repr(task))
        self._tasks.clear()
        if self._bus_started:
            await self.platform.bus.stop()
            self._bus_started = False
        if isinstance(self.prices, HttpCatalogPrices):
            await self.prices.close()
        for part in self.parts:
            for close in part.closers:
                await close()
        await self.platform.close()
        if self.tracing is not None:  # the spans still buffered go out (bounded by a timeout)
            await asyncio.to_thread(self.tracing.shutdown)
        log.info("bazaar_stopped", kind=self.kind.value, services=list(self.services))

    def app(self, drain: Drain | None = None, *, own_process: bool = False) -> ASGIApp:
        """The process's HTTP app: its services' routes (none for a worker), with health,
        readiness, metrics and (but a worker's) the whole API's documents; starting and
        stopping with the server. With `drain` (granian's worker of `bazaar serve`), SIGTERM
        fails readiness for a while before the stop. In a process of its own (not a test's),
        what the start made is frozen out of the garbage collector's scans."""
        worker = self.kind is ProcessKind.WORKER
        routers = [] if worker else [p.router for p in self.parts]
        title = "Bazaar" if len(self.services) > 1 else f"Bazaar {self.services[0]}"
        readiness = [BackgroundCheck([self._databases_answer, self._broker_answers])]
        return create_app(
            title=title,
            routers=routers,
            verifier=self.platform.verifier,
            readiness=[drain.problem, *readiness] if drain else readiness,
            # Without Redis, reads go to the database and login limits fail open: slower, not
            # down (a cache outage must not take every instance out of rotation).
            degrading=[BackgroundCheck([self._redis_answers])],
            on_startup=[
                self.start,
                *([] if worker else [_make_api_document]),
                *([drain.arm] if drain else []),
                *([freeze_what_started] if own_process else []),
            ],
            on_shutdown=[self.stop],
            response_cache=self.platform.response_cache,
            # an API's documents are the whole API's, as where clients arrive (`documents`)
            document=None if worker else api_document,
            tracing=self.tracing,
        )

    async def _check_redis(self) -> None:
        """A Redis that does not answer at start is a wrong URL; later it is an outage."""
        problem = await self.platform.cache_problem(at_start=True)
        if problem is not None:
            raise SettingsError("REDIS_URL", f"does not answer ({problem})")

    async def _redis_answers(self) -> str | None:
        return await self.platform.cache_problem()

    async def _broker_answers(self) -> str | None:
        bus = self.platform.bus
        if not self._bus_started and self.kind is ProcessKind.SERVE:
            return None  # this API needs no broker
        return await bus.problem()

    async def _databases_answer(self) -> str | None:
        """Each database's primary answers (replicas may be down: not fatal)."""
        for db in self.databases:
            try:
                await db.ping()
            except PoolTimeout:
                continue  # every connection busy serving: busy is not broken
            except Exception as error:
                return f"database {db.name}: {type(error).__name__}"
        return None


async def _make_api_document() -> None:
    """The API's document, made at the start in a thread of its own: made on the event loop at
    the first request for it, its half a second of CPU (more under a CPU quota) would hold
    every other request, readiness checks included."""
    threading.Thread(target=api_document, name="api-document", daemon=True).start()


def create_embedded_app() -> ASGIApp:
    """The ASGI app of `bazaar dev`, built from the environment (a granian factory)."""
    die_with_parent()
    settings = Settings.from_env()
    configure_logging(settings.platform.log_level, json=settings.platform.log_json)
    return Runtime(settings).app(own_process=True)
