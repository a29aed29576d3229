"""What the system under test says about a measurement: its processes' /metrics (read before
and after, as differences of counters, and the outbox backlog sampled during it) and the CPU
each of its processes used (/proc/<pid>/stat, user + system time).
"""

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.results import Latency, Observed

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
"""(sample name, sorted labels) -> value, summed over every process scraped."""
PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
TICKS = os.sysconf("SC_CLK_TCK")


def scrape(urls: Iterable[str]) -> Samples:
    """Every sample of every process's /metrics, summed by name and labels; a process that
    does not answer (stopped for a scaling step) adds nothing."""
    samples: Samples = {}
    with httpx.Client(timeout=5) as client:
        for url in urls:
            try:
                text = client.get(f"{url}/metrics").text
            except httpx.HTTPError:
                continue
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    key = (sample.name, tuple(sorted(sample.labels.items())))
                    samples[key] = samples.get(key, 0.0) + sample.value
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(
        value
        for (sample, pairs), value in samples.items()
        if sample == name and all(dict(pairs).get(k) == v for k, v in labels.items())
    )


def _delta(after: Samples, before: Samples) -> Samples:
    return {key: value - before.get(key, 0.0) for key, value in after.items()}


def _requests(delta: Samples) -> float:
    """HTTP requests answered, health checks and scrapes left out."""
    return sum(
        value
        for (sample, pairs), value in delta.items()
        if sample == "bazaar_http_request_duration_seconds_count"
        and dict(pairs).get("route") not in PROBES
    )


PLACING = "placing (POST /v1/orders)"


def hop_ms(delta: Samples) -> dict[str, float] | None:
    """The mean milliseconds of each of a checkout's hops over the measurement: placing the
    order, each consumer's handling of each event type (`bazaar_event_handle_seconds`), each
    kind of job (`bazaar_job_seconds`), summed over every process. On an idle shop, one order
    at a time, a hop's time is its CPU time and its own waits (the disk, the mail server)."""
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for (sample, pairs), value in delta.items():
        labels = dict(pairs)
        name, _, part = sample.rpartition("_")
        if part not in ("sum", "count"):
            continue
        if name == "bazaar_event_handle_seconds":
            hop = f"{labels['consumer']}: {labels['event']}"
        elif name == "bazaar_job_seconds":
            hop = f"job: {labels['kind']}"
        elif name == "bazaar_http_request_duration_seconds" and labels.get("route") == (
            "/v1/orders"
        ):
            hop = PLACING if labels.get("method") == "POST" else ""
        else:
            continue
        if hop:
            totals = sums if part == "sum" else counts
            totals[hop] = totals.get(hop, 0.0) + value
    found = {hop: round(sums[hop] / n * 1000, 2) for hop, n in counts.items() if n > 0}
    return found or None


def histogram_quantile(delta: Samples, name: str, quantile: float) -> float | None:
    """The quantile of a histogram's observations over the measurement, interpolated linearly
    within the bucket (as PromQL's histogram_quantile does)."""
    buckets: dict[float, float] = {}
    for (sample, pairs), value in delta.items():
        if sample == f"{name}_bucket":
            bound = float(dict(pairs)["le"])
            buckets[bound] = buckets.get(bound, 0.0) + value
    ordered = sorted(buckets.items())
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = quantile * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            inside = count - lower_count
            share = (rank - lower_count) / inside if inside else 0.0
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return None


def observed(after: Samples, before: Samples, backlog_max: int) -> Observed:
    delta = _delta(after, before)
    hits = total(delta, "bazaar_cache_requests_total", result="hit")
    lookups = total(delta, "bazaar_cache_requests_total")
    reads = total(delta, "bazaar_db_reads_total")
    requests = _requests(delta)
    statements = total(delta, "bazaar_db_statements_total")
    settle = [
        histogram_quantile(delta, "bazaar_order_settle_seconds", q) for q in (0.5, 0.95, 0.99)
    ]
    settled = total(delta, "bazaar_checkout_outcomes_total")
    return Observed(
        cache_hit_ratio=round(hits / lookups, 3) if lookups else None,
        queries_per_request=round(statements / requests, 2) if requests and statements else None,
        replica_share=(
            round(total(delta, "bazaar_db_reads_total", target="replica") / reads, 3)
            if reads
            else None
        ),
        settle_ms=(
            Latency(*(round(v * 1000, 1) for v in settle), max=0.0)  # type: ignore[misc]
            if all(v is not None for v in settle)
            else None
        ),
        outbox_backlog_max=backlog_max,
        orders_settled=round(settled) if settled else None,
        hop_ms=hop_ms(delta),
    )


def cpu_seconds(pids: Iterable[int]) -> float:
    seconds = 0.0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        seconds += (int(fields[11]) + int(fields[12])) / TICKS
    return seconds


@dataclass
class Watch:
    """One measurement's observation: start it, run the load, stop it."""

    metrics_urls: Callable[[], list[str]]
    processes: Callable[[], dict[str, list[int]]]
    """Each process of the system by name, with its pids (a program and its children)."""
    backlog_urls: Callable[[], list[str]]
    """The processes that run outbox relays (sampled during the measurement: kept few, since
    rendering /metrics costs an instance under a small quota a share of it)."""
    interval: float = 2.0
    _before: Samples = field(default_factory=dict)
    _cpu_before: dict[str, float] = field(default_factory=dict)
    elapsed: float = 0.0
    """Seconds from start to stop: the span of the CPU figures."""
    _started: float = 0.0
    _backlog_max: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _sampler: threading.Thread | None = None

    def start(self) -> None:
        self._before = scrape(self.metrics_urls())
        self._cpu_before = {name: cpu_seconds(p) for name, p in self.processes().items()}
        self._started = time.monotonic()
        self._stop.clear()
        self._backlog_max = int(total(self._before, "bazaar_outbox_backlog"))
        self._sampler = threading.Thread(target=self._sample_backlog, daemon=True)
        self._sampler.start()

    def _sample_backlog(self) -> None:
        while not self._stop.wait(self.interval):
            backlog = total(scrape(self.backlog_urls()), "bazaar_outbox_backlog")
            self._backlog_max = max(self._backlog_max, int(backlog))

    def stop(self) -> tuple[Observed, dict[str, float]]:
        """What the servers said, and the cores each process used on average."""
        elapsed = self.elapsed = time.monotonic() - self._started
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join()
        after = scrape(self.metrics_urls())
        cores = {}
        for name, pids in self.processes().items():
            used = cpu_seconds(pids) - self._cpu_before.get(name, 0.0)
            if used > 0:
                cores[name] = round(used / elapsed, 3)
        return observed(after, self._before, self._backlog_max), cores
