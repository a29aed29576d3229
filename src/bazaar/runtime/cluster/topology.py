"""What `bazaar up` runs: how many instances of each service, replicas and order shards, and
the ports every process listens on.

The topology comes from the command line (`--instances catalog=4,orders=2 --replicas 1
--shards 2 --cpu-quota catalog=0.5`) over the defaults; the ports of the instances are taken
free at each start, the ports of the servers that keep data are chosen once and kept in the
state file, so a second `up` finds its PostgreSQL and Redis where it left them.
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


class TopologyError(ValueError):
    """The command line asks for a topology that cannot run."""


def _per_service(
    option: str, text: str | None, what: str, convert: Callable[[str], float]
) -> Iterator[tuple[str, float, str]]:
    """Each `SERVICE=VALUE` of a comma-separated option: the service, its value, as written."""
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in SERVICES:
            raise TopologyError(
                f"{option}: expected SERVICE={what.upper()} with SERVICE one of"
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
    counts |= {name: high for name, (_low, high) in (autoscale.ranges if autoscale else {}).items()}
    for name, count, _written in _per_service("--instances", text, "count", int):
        if not 1 <= count <= 32:
            raise TopologyError(f"--instances: {name} needs 1 to 32 instances, got {count}")
        counts[name] = int(count)
    return counts


def parse_cpu_quota(text: str | None) -> dict[str, float]:
    """`catalog=0.25,orders=0.5`: the CPUs each API instance of a service is held to (a
    service not named is not held)."""
    quotas: dict[str, float] = {}
    for name, cores, written in _per_service("--cpu-quota", text, "cores", float):
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


def parse_autoscale(
    text: str, targets: str | None, period: float, up_window: float, down_window: float
) -> RunAutoscale:
    """`catalog=1..8,orders=1..4` with `catalog=4` targets (DEFAULT_TARGET for the others)."""
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
        if name not in SERVICES or not dots or not 1 <= minimum <= maximum <= MAX_INSTANCES:
            raise TopologyError(
                f"--autoscale: expected SERVICE=MIN..MAX with SERVICE one of"
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
        targets={name: chosen.get(name, DEFAULT_TARGET) for name in ranges},
        period=period,
        up_window=up_window,
        down_window=down_window,
    )


def _per_service_values(
    option: str, text: str | None, what: str, convert: Callable[[str], float]
) -> dict[str, float]:
    return {name: value for name, value, _written in _per_service(option, text, what, convert)}


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
    """The CPUs each API instance of a service is held to (cpulimit.py)."""
    fault_proxies: bool = False
    """A fault proxy between the processes and each server (faultproxy.py, `bazaar chaos`)."""
    autoscale: RunAutoscale | None = None
    """`--autoscale`: its services' instances are their maximum, their minimum in service."""

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
            if self.instances[name] != high:
                raise TopologyError(
                    f"{name}: --autoscale starts its maximum, {high} instance(s), and"
                    f" --instances asks for {self.instances[name]}: name it in one only"
                )

    def in_service(self, service: str) -> int:
        """How many of the service's instances `up` starts and puts in rotation."""
        if self.autoscale and service in self.autoscale.ranges:
            return self.autoscale.ranges[service][0]
        return self.instances[service]

    def processes(self, ports: "PortSource") -> list[Process]:
        """Every API instance and one worker per service, each on a port of its own."""
        found = []
        for service in SERVICES:
            for index in range(self.instances[service]):
                found.append(Process(f"{service}-{index}", service, "serve", ports.take()))
            found.append(Process(f"{service}-worker", service, "worker", ports.take()))
        return found


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
