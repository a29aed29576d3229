"""The processes of the scaled topology: one service's HTTP API (`bazaar serve`) and one
service's worker (`bazaar worker`), each run as many times as the load asks.

Both need the real servers. SQLite files shared by separate processes are not that topology:
one writer at a time for all of them, and no broker to carry events or cache invalidations
from one process to another. A worker also needs the broker: with the in-process bus its
relay would mark events published that no other process can ever receive.
"""

import asyncio
import functools
import signal
from collections.abc import Callable

from litestar.types import ASGIApp

from bazaar.platform.observability import configure_logging, log
from bazaar.platform.settings import SettingsError
from bazaar.runtime.config import ProcessKind, Settings
from bazaar.runtime.embedded import CATALOG_URL_NEEDED, Runtime
from bazaar.runtime.lifetime import Drain, die_with_parent, freeze_what_started
from bazaar.runtime.services import SERVICES

DRAIN_SECONDS = 2.0
"""How long `bazaar serve` fails its readiness after SIGTERM before it stops: longer than
`bazaar up`'s HAProxy takes to count two failed checks 500 ms apart, with a margin."""
STOP_BOUND = 15.0
"""The longest a worker takes to stop after SIGTERM before it gives up waiting on itself."""


def settings_for(kind: ProcessKind, service: str) -> Settings:
    """The environment's settings for one service's process, refused when they name no
    servers that separate processes can share."""
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}: one of {', '.join(SERVICES)}")
    settings = Settings.from_env(kind=kind)
    command = f"bazaar {kind.value} {service}"
    if settings.platform.database_url is None:
        raise SettingsError(
            "DATABASE_URL",
            f"`{command}` needs PostgreSQL: SQLite files shared by separate processes are not"
            " the scaled topology (one writer, no events or cache invalidation between"
            " processes); run `bazaar dev` for everything in one process",
        )
    if kind is ProcessKind.WORKER and settings.platform.broker_url is None:
        raise SettingsError(
            "BROKER_URL",
            f"`{command}` needs RabbitMQ: the in-process bus cannot carry its events to the"
            " other processes",
        )
    if kind is ProcessKind.SERVE and service == "orders" and not settings.orders.catalog_url:
        raise SettingsError("CATALOG_URL", CATALOG_URL_NEEDED)
    return settings


def service_app(kind: ProcessKind, service: str) -> ASGIApp:
    """The ASGI app of one service's process: its API (serve) or its health port (worker)."""
    die_with_parent()
    settings = settings_for(kind, service)
    configure_logging(settings.platform.log_level, json=settings.platform.log_json)
    drain = Drain(DRAIN_SECONDS) if kind is ProcessKind.SERVE else None
    return Runtime(settings, services=[service]).app(drain, own_process=True)


def __getattr__(name: str) -> Callable[[], ASGIApp]:
    """granian's factories, named `serve_<service>` and `worker_<service>` (granian calls a
    factory by module and attribute, without arguments)."""
    kind, _, service = name.partition("_")
    if kind in ("serve", "worker") and service in SERVICES:
        return functools.partial(service_app, ProcessKind(kind), service)
    raise AttributeError(name)


async def run_worker(service: str, stop: asyncio.Event | None = None) -> None:
    """Run one service's worker until SIGTERM or SIGINT (or `stop`), then stop cleanly:
    no new message is taken, the running handlers finish, the rest go back to the broker."""
    settings = settings_for(ProcessKind.WORKER, service)
    platform = settings.platform
    configure_logging(platform.log_level, json=platform.log_json, service=service)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runtime = Runtime(settings, services=[service])
    try:
        await runtime.start()
        await freeze_what_started()
        await stop.wait()
        log.info("worker_stopping", service=service)
    finally:
        try:
            async with asyncio.timeout(STOP_BOUND):
                await runtime.stop()
        except TimeoutError:
            log.error("worker_stop_timed_out", service=service, seconds=STOP_BOUND)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
