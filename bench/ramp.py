"""The ramp: `bazaar up --autoscale` under a load that rises about tenfold over minutes,
holds, then falls, every catalog instance under its CPU quota. Measured on one time axis:
offered and achieved requests a second, p99 latency (wrk's, per chunk of CHUNK_SECONDS), errors
and the instances in service; judged against issue 16's targets (no failed request, p99 back
under its bound within 30 s of each step up, back to the minimum within the scale-down window
after the load falls, and how many scale events happened against the fewest the policies
allow).
"""

import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import msgspec

from bazaar.runtime.cluster import haproxy, hpa
from bazaar.runtime.cluster.autoscale import Report, decisions_file, in_flight
from bazaar.runtime.cluster.folder import Folder, bazaar_command
from bazaar.runtime.cluster.record import RunRecord
from bazaar.runtime.cluster.status import running_environment
from bench import loadgen
from bench.systems import SCALED, Scaled, _bazaar_environment, _check, _seed, prepare_catalog

CHUNK_SECONDS = 5
SAMPLE_SECONDS = 1.0
RECOVERY_SECONDS = 30.0
P99_BOUND_MS = 100.0
"""The product page's bound (runner.QUICK_BOUNDS_MS): the ramp reads product pages."""
SHAPE = ((1, 30), (2.5, 30), (5, 30), (7.5, 30), (10, 60), (5, 30), (1, 150))
"""(times the base rate, seconds): up tenfold in two minutes, a minute at the top, down, and
long enough at the base for the scale-down window and its steps."""


@dataclass(frozen=True)
class Stage:
    rate: float
    seconds: float


def schedule(base_rps: float, stretch: float = 1.0) -> list[Stage]:
    return [Stage(round(base_rps * times, 1), seconds * stretch) for times, seconds in SHAPE]


@dataclass
class Sample:
    at: float
    offered: float
    achieved: float
    errors: float
    """Answers of 5xx, and requests HAProxy could not pass on, per second."""
    in_service: int
    in_flight: float | None


@dataclass
class Chunk:
    start: float
    end: float
    offered: float
    achieved: float
    p99_ms: float
    errors: int


@dataclass
class RampResult:
    base_rps: float
    quota: float
    minimum: int
    maximum: int
    target: float
    down_window: float
    stages: list[Stage] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    chunks: list[Chunk] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    """The autoscaler's changes (autoscale.Event), `at` from the ramp's start."""

    def save(self, path: Path) -> None:
        path.write_bytes(msgspec.json.format(msgspec.json.encode(asdict(self)), indent=2))

    @classmethod
    def load(cls, path: Path) -> "RampResult":
        data = msgspec.json.decode(path.read_bytes())
        return cls(
            **{k: v for k, v in data.items() if k not in ("stages", "samples", "chunks")},
            stages=[Stage(**s) for s in data["stages"]],
            samples=[Sample(**s) for s in data["samples"]],
            chunks=[Chunk(**c) for c in data["chunks"]],
        )


@dataclass
class Autoscaled(Scaled):
    """`bazaar up --autoscale catalog=MIN..MAX`, catalog under its quota, one instance of
    every other service."""

    minimum: int = 2
    target: float | None = None

    def start(self, products: int) -> None:
        instances = f"catalog={self.most},orders=1,identity=1,payments=1,notifications=1"
        command = [*bazaar_command(), "up", "--detach", "--instances", instances]
        command += ["--autoscale", f"catalog={self.minimum}..{self.most}"]
        if self.target is not None:
            command += ["--autoscale-target", f"catalog={self.target:g}"]
        command += ["--cpu-quota", f"catalog={self.quotas['catalog']}"]
        command += ["--port", str(self.port), "--stats-port", str(self.stats_port)]
        _check(command, self.environment)
        folder = Folder(self.data_dir)
        self.run = RunRecord.load(folder.run)
        self.serving = dict.fromkeys(SCALED, 1)
        _seed(_bazaar_environment(running_environment(folder), self.source), products)


class Sampler:
    """HAProxy's counters every SAMPLE_SECONDS, in a thread: requests and errors through the
    front door, catalog's servers UP and their requests in flight."""

    def __init__(self, folder: Folder, began: float, offered: Callable[[], float]) -> None:
        self.socket, self.began, self.offered = folder.haproxy_socket, began, offered
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _counters(self) -> tuple[int, int, int, float | None]:
        import csv
        import io

        text = haproxy.admin(self.socket, "show stat")
        requests = errors = serving = 0
        for row in csv.DictReader(io.StringIO(text.lstrip("# "))):
            if row["pxname"] == "api" and row["svname"] == "FRONTEND":
                requests = int(row["req_tot"] or 0)
                errors += int(row["hrsp_5xx"] or 0)
            elif row["pxname"] == "catalog" and row["svname"] == "BACKEND":
                errors += int(row["econ"] or 0) + int(row["eresp"] or 0)
            elif row["pxname"] == "catalog" and row["status"].startswith("UP"):
                serving += 1
        return requests, errors, serving, in_flight(text).get("catalog")

    def _sample(self) -> None:
        last_at, (last_requests, last_errors, _, _) = time.monotonic(), self._counters()
        while not self._stop.wait(SAMPLE_SECONDS):
            now = time.monotonic()
            requests, errors, serving, flight = self._counters()
            elapsed = now - last_at
            self.samples.append(
                Sample(
                    at=round(now - self.began, 2),
                    offered=self.offered(),
                    achieved=round((requests - last_requests) / elapsed, 1),
                    errors=round((errors - last_errors) / elapsed, 2),
                    in_service=serving,
                    in_flight=None if flight is None else round(flight, 2),
                )
            )
            last_at, last_requests, last_errors = now, requests, errors

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def run_ramp(
    folder: Path,
    base_rps: float,
    quota: float,
    maximum: int,
    step: Callable[[str], None],
    stretch: float = 1.0,
    products: int = 2000,
    target: float | None = None,
    minimum: int = 2,
) -> RampResult:
    """Start the system, run the schedule, stop it; the result (also ramp.json)."""
    system = Autoscaled(folder, {"catalog": quota}, maximum, minimum=minimum, target=target)
    step(f"ramp: starting bazaar up --autoscale catalog={minimum}..{maximum} (quota {quota} core)")
    system.start(products)
    try:
        catalog, _token = prepare_catalog(system.url, folder)
        up = Folder(system.data_dir)
        scaling = RunRecord.load(up.run).topology.autoscale
        assert scaling is not None
        result = RampResult(
            base_rps, quota, minimum, maximum, scaling.targets["catalog"], scaling.down_window
        )
        result.stages = schedule(base_rps, stretch)
        offered = [0.0]
        began = time.monotonic()
        wall = time.time()
        with Sampler(up, began, lambda: offered[0]) as sampler:
            end = began
            for stage in result.stages:
                step(f"ramp: {stage.rate:g} req/s offered for {stage.seconds:g} s")
                offered[0] = stage.rate
                # From the ramp's start, not from the stage's: each wrk chunk overruns its
                # seconds a little (its start and its report), and stage after stage the
                # load moved later than the times it is judged at (1.1 s by the fourth step).
                # wrk runs whole seconds: a chunk never runs past the stage's end.
                end += stage.seconds
                while (left := end - time.monotonic()) >= 1.0:
                    start = time.monotonic() - began
                    seconds = min(CHUNK_SECONDS, math.floor(left))
                    m = loadgen.wrk(system.url, "product", catalog, seconds, 256, stage.rate)
                    result.chunks.append(
                        Chunk(
                            round(start, 2),
                            round(time.monotonic() - began, 2),
                            stage.rate,
                            m.rps,
                            m.latency.p99 if m.latency else 0.0,
                            m.errors,
                        )
                    )
                time.sleep(max(0.0, end - time.monotonic()))  # the next step on its time
        result.samples = sampler.samples
        report = msgspec.json.decode(decisions_file(up).read_bytes(), type=Report)
        result.events = [
            msgspec.to_builtins(e) | {"at": round(e.at - wall, 2)}
            for e in report.events
            if e.service == "catalog" and e.at >= wall
        ]
    finally:
        system.stop()
    result.save(folder / "ramp.json")
    return result


@dataclass(frozen=True)
class Verdict:
    name: str
    value: str
    met: bool


def fewest_events(minimum: int, peak: int, start: int | None = None) -> int:
    """The scale events the one-machine policies need to go from `start` (the minimum) to
    `peak` and back to `minimum`: up by doubling or +4 a step, down by half a step."""
    count, n = 0, minimum if start is None else start
    while n < peak:
        n, count = min(peak, max(2 * n, n + 4)), count + 1
    while n > minimum:
        n, count = max(minimum, n // 2), count + 1
    return count


def judge(result: RampResult) -> list[Verdict]:
    """Issue 16's targets, each with the measured value."""
    verdicts = []
    errors = sum(c.errors for c in result.chunks)
    failed = round(sum(s.errors * SAMPLE_SECONDS for s in result.samples))
    verdicts.append(
        Verdict("no failed request", f"{errors} (wrk), {failed} (HAProxy)", errors + failed == 0)
    )
    starts, at = [], 0.0
    for previous, stage in zip([None, *result.stages], result.stages, strict=False):
        if previous is not None and stage.rate > previous.rate:
            starts.append((at, at + stage.seconds, stage.rate))
        at += stage.seconds
    for begin, end, rate in starts:
        chunks = [c for c in result.chunks if begin <= c.start < end]
        over = [c for c in chunks if c.p99_ms > P99_BOUND_MS]
        back = (max(c.end for c in over) - begin) if over else 0.0
        verdicts.append(
            Verdict(
                f"p99 under {P99_BOUND_MS:g} ms within {RECOVERY_SECONDS:g} s of the step to"
                f" {rate:g} req/s",
                f"{back:.0f} s",
                back <= RECOVERY_SECONDS and (not over or over[-1] is not chunks[-1]),
            )
        )
    fall = sum(s.seconds for s in result.stages[:-1])
    at_minimum = [s.at for s in result.samples if s.at >= fall and s.in_service == result.minimum]
    took = at_minimum[0] - fall if at_minimum else None
    allowed = result.down_window + 3 * hpa.ONE_MACHINE.down.policies[0].period
    verdicts.append(
        Verdict(
            f"back to {result.minimum} within the window ({result.down_window:g} s) and its steps",
            (
                f"{took:.0f} s (allowed {allowed:g} s)"
                if took is not None
                else f"not in the run: {result.samples[-1].in_service if result.samples else '-'}"
                f" at its end, {result.samples[-1].at - fall if result.samples else 0:.0f} s"
                " after the fall"
            ),
            took is not None and took <= allowed,
        )
    )
    counts = [s.in_service for s in result.samples] or [result.minimum]
    peak = max(counts)
    fewest = fewest_events(result.minimum, peak, counts[0])
    verdicts.append(
        Verdict(
            "no flapping: scale events against the fewest the policies allow",
            f"{len(result.events)} against {fewest} (peak {peak})",
            len(result.events) <= fewest + 2,
        )
    )
    return verdicts
