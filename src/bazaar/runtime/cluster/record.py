"""`run.json`: what a running `bazaar up` is (its topology, every process with its port, the
connection budget, the pids to check gone), written by `up`, read by `down`, `status`,
`restart`, `scale`, the benchmark and the fault kit; removed by `down`."""

from pathlib import Path

import msgspec


class RunAutoscale(msgspec.Struct, frozen=True):
    """`up --autoscale`: the range each service is kept within by the controller
    (autoscale.py), its target load per instance, and how often and how cautiously it acts."""

    ranges: dict[str, tuple[int, int]]
    """Instances in service, from the minimum to the maximum (`up` starts the maximum)."""
    targets: dict[str, float]
    """Requests in flight per instance (HAProxy's view) that each service is scaled to."""
    period: float
    """Seconds between two decisions."""
    up_window: float
    down_window: float
    """Stabilization windows, in seconds (hpa.py)."""


class RunTopology(msgspec.Struct, frozen=True):
    instances: dict[str, int]
    replicas: int
    shards: int
    port: int
    """HAProxy's: the whole API."""
    stats_port: int
    cpu_quota: dict[str, float]
    fault_proxies: list[str] = []
    """The fault proxies' routes, `NAME=LISTEN:UPSTREAM` (`up --fault-proxies`)."""
    prometheus_port: int | None = None
    """Where its Prometheus answers (prometheus.py)."""
    autoscale: RunAutoscale | None = None


class RunProcess(msgspec.Struct, frozen=True):
    name: str
    service: str
    kind: str
    """`serve` (the service's API) or `worker`."""
    port: int
    cpu_quota: float | None = None
    cpu_group: str | None = None
    """The cgroup that holds it to `cpu_quota` (`up --cpu-quota`)."""


class RunBudget(msgspec.Struct, frozen=True):
    max_connections: int
    total: int
    """Connections every process together may open to one PostgreSQL server."""
    pgbouncer: list[int] = []
    """The PgBouncers' ports (`up --pgbouncer`)."""


class RunRecord(msgspec.Struct):
    topology: RunTopology
    processes: list[RunProcess]
    budget: RunBudget
    supervisord_pid: int
    pids: list[int] = []
    """Every process `up` started, PostgreSQL's included (written once all are up)."""

    @classmethod
    def load(cls, path: Path) -> "RunRecord":
        return msgspec.json.decode(path.read_bytes(), type=cls)

    def save(self, path: Path) -> None:
        path.write_bytes(msgspec.json.format(msgspec.json.encode(self), indent=2))

    def process(self, name: str) -> RunProcess:
        return next(p for p in self.processes if p.name == name)

    def of(self, service: str, kind: str | None = None) -> list[RunProcess]:
        """A service's processes (of one `kind`), in the order `up` started them."""
        return [p for p in self.processes if p.service == service and kind in (None, p.kind)]
