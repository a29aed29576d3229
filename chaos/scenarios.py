"""The scenarios: one fault each, done by the fault kit while the checkout stream runs.

Each `inject` returns once the fault is over (a crashed program is left for supervisord to
start again, a frozen one is let go, a crashed primary started, a proxy set back to `pass`):
what follows is the recovery the report times.
"""

from collections.abc import Callable
from dataclasses import dataclass

from chaos.kit import FaultKit


@dataclass(frozen=True)
class Scenario:
    name: str
    fault: str
    """What is done, in the report's words."""
    inject: Callable[[FaultKit], object]
    quick: bool = False
    """Part of `bazaar chaos --quick` (CI)."""
    unanswered: bool = False
    """Whether a client's connection may close without an answer: only when the process
    holding it dies. HAProxy itself (in production two share an address; here there is one),
    or an instance in the middle of answering: HAProxy then closes the client's connection
    rather than guess, as the instance itself would have, and the client sends the request
    again with its Idempotency-Key. A request that times out is never allowed."""


SCENARIOS = [
    Scenario(
        "orders-instance-killed",
        "an orders API instance gets SIGKILL",
        lambda kit: kit.kill(kit.instance("orders")),
        quick=True,
        unanswered=True,
    ),
    Scenario(
        "catalog-instance-frozen",
        "a catalog API instance is frozen (SIGSTOP) for 5 s",
        lambda kit: kit.pause(kit.instance("catalog"), 5),
    ),
    Scenario(
        "orders-worker-killed",
        "the orders worker (outbox relay, checkout saga) gets SIGKILL",
        lambda kit: kit.kill(kit.instance("orders", "worker")),
        quick=True,
    ),
    Scenario(
        "payments-worker-killed",
        "the payments worker (charges, refunds) gets SIGKILL",
        lambda kit: kit.kill(kit.instance("payments", "worker")),
    ),
    Scenario(
        "haproxy-killed",
        "HAProxy gets SIGKILL (supervisord starts it again)",
        lambda kit: kit.kill("haproxy"),
        unanswered=True,
    ),
    Scenario(
        "rabbitmq-restarted",
        "the RabbitMQ node is stopped and started again",
        lambda kit: kit.restart_broker(),
    ),
    Scenario(
        "primary-crashed",
        "the PostgreSQL primary crashes (pg_ctl -m immediate), back 3 s later",
        lambda kit: kit.crash_primary(3),
        quick=True,
    ),
    Scenario(
        "replica-frozen",
        "the PostgreSQL replica is frozen (SIGSTOP) for 5 s",
        lambda kit: kit.pause_replica(5),
    ),
    Scenario(
        "redis-killed",
        "Redis gets SIGKILL (supervisord starts it again)",
        lambda kit: kit.kill("redis"),
    ),
    Scenario(
        "postgres-cut",
        "every connection to the primary is reset, and new ones too, for 3 s",
        lambda kit: kit.proxy("postgres", "cut", 3),
    ),
    Scenario(
        "postgres-slow",
        "the primary's link gets 100 ms each way for 5 s",
        lambda kit: kit.proxy("postgres", "slow", 5, delay_ms=100),
    ),
    Scenario(
        "redis-blackholed",
        "Redis's link carries nothing for 5 s (a partition)",
        lambda kit: kit.proxy("redis", "blackhole", 5),
        quick=True,
    ),
    Scenario(
        "rabbitmq-cut",
        "every connection to RabbitMQ is reset, and new ones too, for 3 s",
        lambda kit: kit.proxy("rabbitmq", "cut", 3),
    ),
]
BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}
