"""What `bazaar up` runs: how many instances of each service, replicas and order shards, and
the ports every process listens on.

The topology comes from the command line (`--instances catalog=4,orders=2 --replicas 1
--shards 2 --cpu-quota catalog=0.5`) over the defaults; in `--cpu-quota` and `--autoscale`, a
name such as `notifications-worker` means the service's workers, not its API instances. The
ports of the instances are taken free at each start, the ports of the servers that keep data
are chosen once and kept in the state file, so a second `up` finds its PostgreSQL and Redis
where it left them.
"""

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from bazaar.runtime.cluster.cpulimit import MAX_CORES, MIN_CORES
from bazaar.runtime.cluster.record import RunAutoscale
from bazaar.runtime.services import SERVICES

DEFAULT_INSTANCES = 2
DEFAULT_REPLICAS = 1
DEFAULT_SHARDS = 2
WORKER = "-worker"
"""`SERVICE-worker` names a service's workers in `--cpu-quota` and `--autoscale`."""


class TopologyError(ValueError):
    """The command line asks for a topology that cannot run."""


def worker_key(service: str) -> str:
    return service + WORKER


def split_key(key: str) -> tuple[str, str]:
    """`catalog` -> (catalog, serve); `catalog-worker` -> (catalog, worker)."""
    if key.endswith(WORKER):
        return key.removesuffix(WORKER), "worker"
    return key, "serve"


KEYS = (*SERVICES, *(worker_key(service) for service in SERVICES))
"""What `--cpu-quota` and `--autoscale` may name: a service's API instances or its workers."""


def _per_service(
    option: str,
    text: str | None,
    what: str,
    convert: Callable[[str], float],
    names: tuple[str, ...] = SERVICES,
) -> Iterator[tuple[str, float, str]]:
    """Each `NAME=VALUE` of a comma-separated option: the name, its value, as written."""
    shown = "SERVICE" if names == SERVICES else "SERVICE or SERVICE-worker"
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in names:
            raise TopologyError(
                f"{option}: expected {shown}={what.upper()} with SERVICE one of"
                f" {', '.join(SERVICES)}, got {item.strip()!r}"
            )
        try:
            converted = convert(value)
        except ValueError:
            raise TopologyError(f"{option}: {name}'s {what} {value!r} is not a number") from None
        yield name, converted, value.strip()


def parse_instances(text: str | None, autoscale: RunAutoscale | None = None) -> dict[str, int]:
    """`catalog=4,orders=2` over the default of two instances of every service (an
    autoscaled service's maximum)."""
    counts = dict.fromkeys(SERVICES, DEFAULT_INSTANCES)
    ranges = autoscale.ranges if autoscale else {}
    counts |= {name: high for name, (_low, high) in ranges.items() if name in SERVICES}
    for name, count, _written in _per_service("--instances", text, "count", int):
        if not 1 <= count <= 32:
            raise TopologyError(f"--instances: {name} needs 1 to 32 instances, got {count}")
        counts[name] = int(count)
    return counts


def parse_cpu_quota(text: str | None) -> dict[str, float]:
    """`catalog=0.25,orders=0.5,notifications-worker=0.1`: the CPUs each API instance (or
    each worker) of a service is held to (one not named is not held)."""
    quotas: dict[str, float] = {}
    for name, cores, written in _per_service("--cpu-quota", text, "cores", float, KEYS):
        if not MIN_CORES <= cores <= MAX_CORES:
            raise TopologyError(
                f"--cpu-quota: {name} needs {MIN_CORES} to {MAX_CORES:g} cores, got {written}"
            )
        quotas[name] = cores
    return quotas


MAX_INSTANCES = 32
DEFAULT_TARGET = 4.0
"""Requests in flight per instance (through HAProxy) an autoscaled service is scaled to by
default: the knee of one catalog instance under a quarter of a core, where it gives 85% of
its peak rate with p99 at 15 ms; past it, more in flight only waits (docs/autoscaling.md)."""
DEFAULT_QUEUE_TARGET = 100.0
"""Messages ready in a service's queues per worker that its workers are scaled to by default:
KEDA's `queueLength` of the production overlay (docs/autoscaling.md)."""


def default_target(key: str) -> float:
    return DEFAULT_QUEUE_TARGET if split_key(key)[1] == "worker" else DEFAULT_TARGET


def signal_of(key: str) -> str:
    """What the autoscaler compares with the target of `key`."""
    return "ready per worker" if split_key(key)[1] == "worker" else "in flight per instance"


def parse_autoscale(
    text: str, targets: str | None, period: float, up_window: float, down_window: float
) -> RunAutoscale:
    """`catalog=1..8,orders=1..4,notifications-worker=1..3` with `catalog=4` targets
    (DEFAULT_TARGET for the others, DEFAULT_QUEUE_TARGET for workers)."""
    ranges: dict[str, tuple[int, int]] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        name, _, bounds = item.partition("=")
        low, dots, high = bounds.partition("..")
        name = name.strip()
        try:
            minimum, maximum = int(low), int(high)
        except ValueError:
            minimum, maximum = 0, -1
        if name not in KEYS or not dots or not 1 <= minimum <= maximum <= MAX_INSTANCES:
            raise TopologyError(
                "--autoscale: expected SERVICE=MIN..MAX or SERVICE-worker=MIN..MAX with SERVICE"
                f" one of"
                f" {', '.join(SERVICES)} and 1 <= MIN <= MAX <= {MAX_INSTANCES},"
                f" got {item.strip()!r}"
            )
        ranges[name] = (minimum, maximum)
    if not ranges:
        raise TopologyError("--autoscale: name at least one service, e.g. catalog=1..4")
    chosen = _per_service_values("--autoscale-target", targets, "target", float)
    for name, value in chosen.items():
        if name not in ranges or not value > 0:
            raise TopologyError(
                f"--autoscale-target: {name} needs a positive target and a range in"
                f" --autoscale, got {value:g}"
            )
    if not period > 0:
        raise TopologyError(f"the autoscaler's period must be positive, got {period:g}")
    return RunAutoscale(
        ranges=ranges,
        targets={name: chosen.get(name, default_target(name)) for name in ranges},
        period=period,
        up_window=up_window,
        down_window=down_window,
    )


def _per_service_values(
    option: str, text: str | None, what: str, convert: Callable[[str], float]
) -> dict[str, float]:
    found = _per_service(option, text, what, convert, KEYS)
    return {name: value for name, value, _written in found}


@dataclass(frozen=True)
class Process:
    """One program that supervisord runs."""

    name: str
    service: str
    kind: str
    """`serve` (the service's API) or `worker` (its relay, consumers and loops)."""
    port: int
    """Where its HTTP answers (the API, or the worker's /healthz, /readyz, /metrics)."""


@dataclass(frozen=True)
class Topology:
    instances: dict[str, int] = field(default_factory=lambda: parse_instances(None))
    replicas: int = DEFAULT_REPLICAS
    shards: int = DEFAULT_SHARDS
    port: int = 8000
    stats_port: int = 8404
    pgbouncer: bool = False
    """A PgBouncer in transaction pooling in front of each PostgreSQL server."""
    cpu_quota: dict[str, float] = field(default_factory=dict)
    """The CPUs each API instance of a service (`catalog`), or each of its workers
    (`catalog-worker`), is held to (cpulimit.py)."""
    fault_proxies: bool = False
    """A fault proxy between the processes and each server (faultproxy.py, `bazaar chaos`)."""
    autoscale: RunAutoscale | None = None
    """`--autoscale`: its services' instances (or workers) are their maximum, their minimum
    in service."""

    def __post_init__(self) -> None:
        if not 0 <= self.replicas <= 8:
            raise TopologyError(f"--replicas: 0 to 8, got {self.replicas}")
        if not 1 <= self.shards <= 64:
            raise TopologyError(f"--shards: 1 to 64, got {self.shards}")
        if self.port == self.stats_port:
            raise TopologyError("--port and --stats-port must differ")
        if self.fault_proxies and self.pgbouncer:
            raise TopologyError("--fault-proxies and --pgbouncer: one or the other")
        for name, (_low, high) in (self.autoscale.ranges if self.autoscale else {}).items():
            if name in SERVICES and self.instances[name] != high:
                raise TopologyError(
                    f"{name}: --autoscale starts its maximum, {high} instance(s), and"
                    f" --instances asks for {self.instances[name]}: name it in one only"
                )

    def in_service(self, key: str) -> int:
        """How many of the service's instances (`catalog`) or workers (`catalog-worker`) `up`
        starts (and puts in rotation)."""
        if self.autoscale and key in self.autoscale.ranges:
            return self.autoscale.ranges[key][0]
        return self.count(key)

    def count(self, key: str) -> int:
        """How many programs of the service's instances or workers `up` writes down: one
        worker, unless autoscaled (its maximum)."""
        service, kind = split_key(key)
        if kind == "serve":
            return self.instances[service]
        ranges = self.autoscale.ranges if self.autoscale else {}
        return ranges[key][1] if key in ranges else 1

    def processes(self, ports: "PortSource") -> list[Process]:
        """Every API instance and worker, each on a port of its own. The first worker of a
        service is `SERVICE-worker`, the others (`--autoscale SERVICE-worker=..`)
        `SERVICE-worker-1`, `-2`..."""
        found = []
        for service in SERVICES:
            for index in range(self.instances[service]):
                found.append(Process(f"{service}-{index}", service, "serve", ports.take()))
            for index in range(self.count(worker_key(service))):
                name = worker_key(service) + (f"-{index}" if index else "")
                found.append(Process(name, service, "worker", ports.take()))
        return found

    def held_back(self, processes: list[Process]) -> set[str]:
        """The instances and workers of autoscaled services over their minimum: written
        down, not started by `up` (the autoscaler starts them when needed)."""
        held = set()
        for service in SERVICES:
            for kind, key in (("serve", service), ("worker", worker_key(service))):
                mine = [p for p in processes if p.service == service and p.kind == kind]
                held |= {p.name for p in mine[self.in_service(key) :]}
        return held

    def quota_of(self, process: Process) -> float | None:
        """The CPUs the process is held to (`--cpu-quota`), None when not held."""
        key = process.service if process.kind == "serve" else worker_key(process.service)
        return self.cpu_quota.get(key)


class PortSource:
    """Free loopback ports, none given twice (the kernel may hand out a port it just gave)."""

    def __init__(self, avoid: set[int] | None = None) -> None:
        self._given: set[int] = set(avoid or ())

    def take(self) -> int:
        for _ in range(100):
            port = free_port()
            if port not in self._given:
                self._given.add(port)
                return port
        raise RuntimeError("no free loopback port found")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
