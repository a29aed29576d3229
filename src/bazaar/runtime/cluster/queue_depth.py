"""The autoscaler's signal for workers: the messages ready in each service's queues on
RabbitMQ, as KEDA's `rabbitmq` trigger reads them (passive declares on one connection kept
open: nothing is created). Ready, not unacknowledged: those a worker holds are being handled;
the ready ones wait for a worker."""

import asyncio
from collections.abc import Mapping

import aio_pika
from aio_pika.abc import AbstractConnection

from bazaar.platform.rabbitmq import RabbitMQBus
from bazaar.platform.rabbitmq_letters import depths_on

CONNECT_TIMEOUT = 5.0


class QueueDepths:
    """Reads the ready messages of each service's consumer queues, on demand, from its own
    event loop (the controller is synchronous). A round the broker does not answer gives
    None for every service: no signal, the count is kept."""

    def __init__(self, environment: Mapping[str, str], services: list[str]) -> None:
        self._runner = asyncio.Runner()
        self.bus, self.consumers = self._runner.run(_consumers(environment, services))
        self._connection: AbstractConnection | None = None

    def read(self) -> dict[str, int | None]:
        try:
            return self._runner.run(asyncio.wait_for(self._read(), CONNECT_TIMEOUT * 2))
        except (OSError, TimeoutError, aio_pika.exceptions.AMQPError):
            self._runner.run(self._drop())
            return dict.fromkeys(self.consumers)

    async def _read(self) -> dict[str, int | None]:
        if self._connection is None or self._connection.is_closed:
            self._connection = await aio_pika.connect(self.bus.url, timeout=CONNECT_TIMEOUT)
        found: dict[str, int | None] = {}
        for service, consumers in self.consumers.items():
            depths = await depths_on(self.bus, self._connection, consumers)
            ready = [d.ready for d in depths]
            found[service] = None if None in ready else sum(r or 0 for r in ready)
        return found

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed:
            await connection.close()

    def close(self) -> None:
        self._runner.run(self._drop())
        self._runner.close()


async def _consumers(
    environment: Mapping[str, str], services: list[str]
) -> tuple[RabbitMQBus, dict[str, list[str]]]:
    """The bus the processes use (for its queue names) and each service's consumers that
    own a queue (a broadcast consumer's queue is its process's own, not shared work)."""
    from bazaar.runtime.config import Settings
    from bazaar.runtime.embedded import Runtime

    runtime = Runtime(Settings.from_env(environment), services=services)
    try:
        bus = runtime.platform.bus
        if not isinstance(bus, RabbitMQBus):
            raise RuntimeError("workers scale on RabbitMQ's queues: BAZAAR_BROKER_URL is unset")
        return bus, {
            part.name: sorted({s.consumer for s in part.subscriptions if not s.is_broadcast})
            for part in runtime.parts
        }
    finally:
        await runtime.platform.close()
