"""Every service in one process: `bazaar dev`, and the app the test suite drives."""

import asyncio

from litestar.types import ASGIApp
from sqlalchemy import text

from bazaar.platform import migrations
from bazaar.platform.cache import RedisCache
from bazaar.platform.observability import configure_logging, log
from bazaar.platform.outbox import OutboxRelay
from bazaar.platform.postgres import ensure_database
from bazaar.platform.rabbitmq import RabbitMQBus
from bazaar.platform.settings import SettingsError
from bazaar.platform.web import create_app
from bazaar.runtime.assemble import assemble
from bazaar.runtime.config import Settings
from bazaar.runtime.platform import Platform, build_platform, require_servers

STOP_TIMEOUT = 5.0
"""How long stopping waits for a cancelled background task before giving up on it."""


class Runtime:
    """The platform, the services on it, and the background tasks that move events."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.platform: Platform = build_platform(settings.platform)
        self.parts = assemble(self.platform, settings)
        self._tasks: list[asyncio.Task] = []
        for part in self.parts:
            for subscription in part.subscriptions:
                self.platform.bus.subscribe(subscription)
        self.relay = OutboxRelay(
            [db for part in self.parts for db in part.databases], self.platform.bus
        )

    async def migrate(self) -> None:
        """Create missing databases (PostgreSQL) and migrate every one, shards included."""
        await require_servers(self.platform)
        for part in self.parts:
            for db in part.databases:
                if db.dialect == "postgresql":
                    await ensure_database(db.primary.url)
                await migrations.upgrade(db, part.schema)

    async def start(self) -> None:
        await self._check_redis()
        await self.migrate()
        await self.platform.bus.start()
        loops = [
            self.relay.run,
            *self.platform.replica_monitors(),
            *(loop for part in self.parts for loop in part.background),
        ]
        self._tasks = [asyncio.create_task(loop()) for loop in loops]
        log.info("bazaar_started", services=[part.name for part in self.parts])

    async def stop(self) -> None:
        """Stop the background tasks and the bus, then close every connection."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _done, stuck = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT)
            for task in stuck:
                log.error("background_task_did_not_stop", task=repr(task.get_coro()))
        self._tasks.clear()
        await self.platform.bus.stop()
        await self.platform.close()

    def app(self) -> ASGIApp:
        return create_app(
            title="Bazaar",
            routers=[part.router for part in self.parts],
            verifier=self.platform.verifier,
            readiness=[self._databases_answer, self._redis_answers, self._broker_answers],
            on_startup=[self.start],
            on_shutdown=[self.stop],
            response_cache=self.platform.response_cache,
        )

    async def _check_redis(self) -> None:
        """A Redis that does not answer at start is a wrong URL; later it is an outage."""
        problem = await self._redis_answers()
        if problem is not None:
            raise SettingsError("REDIS_URL", f"does not answer ({problem})")

    async def _redis_answers(self) -> str | None:
        cache = self.platform.cache
        return await cache.problem() if isinstance(cache, RedisCache) else None

    async def _broker_answers(self) -> str | None:
        bus = self.platform.bus
        return await bus.problem() if isinstance(bus, RabbitMQBus) else None

    async def _databases_answer(self) -> str | None:
        for db in self.platform.all_databases():
            try:
                async with db.read(fresh=True) as session:  # replicas may be down: not fatal
                    await session.execute(text("SELECT 1"))
            except Exception as error:
                return f"database {db.name}: {type(error).__name__}"
        return None


def create_embedded_app() -> ASGIApp:
    """The ASGI app of `bazaar dev`, built from the environment (a granian factory)."""
    settings = Settings.from_env()
    configure_logging(settings.platform.log_level, json=settings.platform.log_json)
    return Runtime(settings).app()
