"""What one run of `bazaar bench` found: the shape of `results.json`, the report's only input.

Everything a report shows is here, so `bazaar bench report` can redraw an old run, and the
next run can set its figures beside this one's (a regression shows as a ratio below 1).

Fields are only ever added, with defaults, and where an older report could not load them (a
`Measurement`'s), beside instead (a mode's `baseline`, `cpu_ms_per_order`); a report loads
what it knows of a newer file and leaves the rest.
"""

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

FORMAT = 1


@dataclass
class Latency:
    """Milliseconds, as the load generator saw them (a request's whole round trip)."""

    p50: float = 0.0
    p95: float = 0.0
    p99: float = 0.0
    max: float = 0.0


@dataclass
class Observed:
    """What the servers' own /metrics said over one measurement (differences of counters)."""

    cache_hit_ratio: float | None = None
    """Hits / look-ups of every cache (edge response cache and Redis) over the measurement."""
    queries_per_request: float | None = None
    """SQL statements run by every process / HTTP requests answered by the API instances."""
    replica_share: float | None = None
    """Read transactions that ran on a replica / all read transactions."""
    settle_ms: Latency | None = None
    """From order placed to order confirmed or cancelled, from the orders workers' histogram."""
    outbox_backlog_max: int | None = None
    """The largest outbox backlog (rows not yet published) sampled during the measurement."""
    orders_settled: int | None = None
    hop_ms: dict[str, float] | None = None
    """Mean milliseconds of each of a checkout's hops (placing, each consumer's handling of each
    event type, each job kind), from the servers' histograms; None where they export none."""


@dataclass
class Measurement:
    """One workload at one load on one configuration."""

    workload: str
    """`hello`, `browse`, `product` (cached product page only), `checkout` or `mixed`."""
    tool: str
    """`wrk` or `locust`."""
    seconds: float
    requests: int
    rps: float
    """Requests per second; for `checkout`, orders placed per second is `orders_per_s`."""
    errors: int
    latency: Latency
    instances: int = 1
    """Instances of the service under test (1 in embedded mode)."""
    offered_rps: float | None = None
    """The fixed rate asked of the load generator, when not as fast as it can."""
    connections: int | None = None
    orders_per_s: float | None = None
    settled: int | None = None
    """Orders the load generator saw settle (confirmed or cancelled) before it stopped."""
    unsettled: int | None = None
    """Orders placed that had not settled when the load generator gave up waiting."""
    settle_ms: Latency | None = None
    """Placed to settled, as the load generator saw it by polling."""
    loadgen_cpu: float = 0.0
    """Cores the load generator itself used (near 1.0 for one thread: it is the bottleneck)."""
    cpu: dict[str, float] = field(default_factory=dict)
    """Cores used by each process of the system under test (`catalog-0`, `orders-worker`...)."""
    observed: Observed = field(default_factory=Observed)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def servers_settle_ms(self) -> Latency | None:
        """Placed to settled as the orders workers timed each order (their histogram): exact,
        where the load generator's polling adds up to one poll interval to every order, and
        a loaded load generator on the same cores adds its own wait (`settle_ms`)."""
        return self.observed.settle_ms or self.settle_ms

    @property
    def settled_per_s(self) -> float | None:
        """Orders the load generator saw settle, a second of the measurement."""
        return round(self.settled / self.seconds, 2) if self.settled is not None else None


def headline(workload: str, m: Measurement) -> tuple[str, float | None, bool]:
    """The figure a workload is judged by: its name, its value, and whether higher is better.
    Of the rounds of a workload, the one with the best headline is kept; and the baseline's
    table starts each workload with it."""
    settle = m.settle_ms
    if workload == "settle-idle":
        return "settle p50 ms", settle.p50 if settle else None, False
    if workload == "checkout-half":
        exact = m.servers_settle_ms
        return "settle p99 ms", exact.p99 if exact else None, False
    if workload == "checkout":
        return "settled orders/s", m.settled_per_s, True
    return "req/s", m.rps, True


@dataclass
class Scaling:
    """The same workload at 1, 2, 4, 8 instances of one service, each under the same quota."""

    service: str
    """`catalog` (workload `product`) or `orders` (workload `checkout`)."""
    workload: str
    points: list[Measurement]

    def efficiency(self, point: Measurement) -> float:
        """throughput(N) / (N x throughput(1))."""
        one = next((p for p in self.points if p.instances == 1), None)
        if one is None or not self.throughput(one) or not point.instances:
            return 0.0
        return self.throughput(point) / (point.instances * self.throughput(one))

    @staticmethod
    def throughput(point: Measurement) -> float:
        return point.orders_per_s if point.orders_per_s is not None else point.rps


@dataclass
class Target:
    """One target of the issue, as this run measured it."""

    name: str
    value: float | None
    bound: float
    unit: str
    met: bool
    detail: str = ""


@dataclass
class ModeResult:
    """Everything measured in one mode: `embedded` (`bazaar dev`) or `scaled` (`bazaar up`)."""

    mode: str
    quota_cores: float | None
    """The CPU quota of each instance under test (and of the hello-world baseline)."""
    hello: Measurement | None = None
    workloads: dict[str, Measurement] = field(default_factory=dict)
    """Peak (closed loop) of every workload: product, browse, checkout, mixed."""
    latency_vs_load: list[Measurement] = field(default_factory=list)
    """Cached product pages at fixed rates, fractions of the peak."""
    scaling: list[Scaling] = field(default_factory=list)
    profile: str | None = None
    """A py-spy profile (file name in the run folder) where a target was missed."""
    notes: list[str] = field(default_factory=list)
    cpu_ms_per_order: dict[str, float] = field(default_factory=dict)
    """Of the checkout workloads: CPU milliseconds that every Bazaar process (not the servers
    nor the load generator) used over the measurement, per order settled in it."""
    baseline: "Baseline | None" = None
    """The baseline commit's figures, when one was measured in the same run."""


@dataclass
class Baseline:
    """The baseline commit's peaks in one mode, measured in the same run as this code's, each
    workload on the two in turn (bench/experiment.py)."""

    workloads: dict[str, Measurement] = field(default_factory=dict)
    cpu_ms_per_order: dict[str, float] = field(default_factory=dict)
    rounds: dict[str, list[list[float | None]]] = field(default_factory=dict)
    """Each workload's headline figure in each round: [this code's, the baseline's]."""


@dataclass
class TracingSetting:
    """One setting of the tracing experiment (bench/tracing_cost.py) on its own `bazaar dev`:
    its workloads' kept rounds, and what its OTLP sink received meanwhile."""

    name: str
    """`off`, `1%` or `100%`."""
    sample_ratio: float | None
    """The share of the traces kept; None is tracing off (no endpoint)."""
    workloads: dict[str, Measurement] = field(default_factory=dict)
    """Each workload's best round."""
    cpu_ms_per_order: dict[str, float] = field(default_factory=dict)
    rounds: dict[str, list[float | None]] = field(default_factory=dict)
    """Each workload's headline figure in every round, in order."""
    spans: dict[str, int] = field(default_factory=dict)
    """Spans the sink received that started during each workload's kept round."""
    spans_received: int = 0
    """Every span the sink received over the experiment."""


@dataclass
class TracingCost:
    """Tracing off, at 1% and at 100%, each workload measured on the settings in turn."""

    quota_cores: float
    rounds: int
    settings: list[TracingSetting] = field(default_factory=list)


@dataclass
class Run:
    started_at: str
    finished_at: str
    machine: dict[str, Any]
    """cores, cpu model, kernel, python, git commit, load average before the run."""
    settings: dict[str, Any]
    """quick, seconds per measurement, products, instance counts, quota."""
    modes: dict[str, ModeResult] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    format: int = FORMAT
    baseline: dict[str, Any] | None = None
    """The commit measured beside this code: `ref` as asked, `commit`, `subject`."""
    tracing: TracingCost | None = None
    """What tracing costs, when the run measured it."""

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "Run":
        return run_from_dict(json.loads(path.read_text()))


def _known(cls: type, data: dict) -> dict:
    """`data` without the fields `cls` does not have (written by a newer version)."""
    names = {f.name for f in fields(cls)}
    return {key: value for key, value in data.items() if key in names}


def _latency(data: dict | None) -> Latency | None:
    return Latency(**_known(Latency, data)) if data else None


def _measurement(data: dict) -> Measurement:
    data = _known(Measurement, data)
    data["latency"] = _latency(data["latency"]) or Latency()
    data["settle_ms"] = _latency(data.get("settle_ms"))
    observed = _known(Observed, data.get("observed") or {})
    observed["settle_ms"] = _latency(observed.get("settle_ms"))
    data["observed"] = Observed(**observed)
    return Measurement(**data)


def _baseline(data: dict | None) -> Baseline | None:
    if data is None:
        return None
    return Baseline(
        workloads={k: _measurement(v) for k, v in data.get("workloads", {}).items()},
        cpu_ms_per_order=dict(data.get("cpu_ms_per_order", {})),
        rounds={k: [list(pair) for pair in v] for k, v in data.get("rounds", {}).items()},
    )


def _mode(data: dict) -> ModeResult:
    return ModeResult(
        mode=data["mode"],
        quota_cores=data.get("quota_cores"),
        hello=_measurement(data["hello"]) if data.get("hello") else None,
        workloads={k: _measurement(v) for k, v in data.get("workloads", {}).items()},
        latency_vs_load=[_measurement(m) for m in data.get("latency_vs_load", [])],
        scaling=[
            Scaling(s["service"], s["workload"], [_measurement(p) for p in s["points"]])
            for s in data.get("scaling", [])
        ],
        profile=data.get("profile"),
        notes=list(data.get("notes", [])),
        cpu_ms_per_order=dict(data.get("cpu_ms_per_order", {})),
        baseline=_baseline(data.get("baseline")),
    )


def _tracing(data: dict | None) -> TracingCost | None:
    if data is None:
        return None
    settings = [
        TracingSetting(
            name=setting["name"],
            sample_ratio=setting.get("sample_ratio"),
            workloads={k: _measurement(v) for k, v in setting.get("workloads", {}).items()},
            cpu_ms_per_order=dict(setting.get("cpu_ms_per_order", {})),
            rounds={k: list(v) for k, v in setting.get("rounds", {}).items()},
            spans=dict(setting.get("spans", {})),
            spans_received=setting.get("spans_received", 0),
        )
        for setting in data.get("settings", [])
    ]
    return TracingCost(data["quota_cores"], data.get("rounds", 1), settings)


def run_from_dict(data: dict) -> Run:
    if data.get("format") != FORMAT:
        raise ValueError(f"results format {data.get('format')!r}, expected {FORMAT}")
    return Run(
        started_at=data["started_at"],
        finished_at=data["finished_at"],
        machine=data["machine"],
        settings=data["settings"],
        modes={name: _mode(mode) for name, mode in data.get("modes", {}).items()},
        targets=[Target(**_known(Target, t)) for t in data.get("targets", [])],
        baseline=data.get("baseline"),
        tracing=_tracing(data.get("tracing")),
    )
