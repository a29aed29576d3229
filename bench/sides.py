"""The code under test in one mode, this checkout's and the baseline commit's, each a `Side`
with its own system; and `ModeRun`, which measures a workload on the sides in turn and keeps
each side's best round (bench/experiment.py says why so).
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import loadgen
from bench.customers import Customers, Readers
from bench.loadgen import Catalog
from bench.observe import Watch
from bench.plan import Plan
from bench.results import Measurement, ModeResult, headline
from bench.source import Source, SourceError
from bench.systems import Embedded, Scaled, admin_token, prepare_catalog

Step = Callable[[str], None]
"""Told what the run does next (the progress bar)."""
Run = Callable[[], Measurement]
Load = Callable[["Side", float], Run]
"""One workload on one side for that many seconds: given the side, it makes ready what the
measurement needs (customers signed in: argon2 on the server, which is not the workload's
cost) and returns what is then measured."""


@dataclass
class Measured:
    measurement: Measurement
    cpu_ms_per_order: float | None = None


@dataclass
class Journeys:
    """Locust runs, each with its customers signed in beforehand."""

    plan: Plan
    system: Embedded | Scaled
    catalog: Catalog
    customers: Customers
    folder: Path
    runs: int = 0

    def ready(
        self, journey: str, users: int, rate: float = 0.0, seconds: float = 0.0, **options: Any
    ) -> Run:
        """The Locust run, its customers signed in now."""
        self.runs += 1
        signed_in = self.customers.signed_in(users)
        failures = self.folder / f"locust-failures-{self.runs:02d}-{journey}.csv"
        return lambda: loadgen.locust(
            self.system.url,
            journey,
            self.catalog,
            seconds or self.plan.journey_seconds,
            users,
            rate=rate,
            customers=signed_in,
            failures=failures,
            **options,
        )


@dataclass
class Side:
    """One code under test in one mode (this checkout's, or the baseline commit's): its
    system, what the workloads read of it, and every round measured on it."""

    source: Source
    system: Embedded | Scaled
    folder: Path
    rounds: dict[str, list[Measured]] = field(default_factory=dict)
    _catalog: Catalog | None = None
    _journeys: Journeys | None = None
    _readers: Readers | None = None

    @property
    def catalog(self) -> Catalog:
        assert self._catalog is not None, "prepare() first"
        return self._catalog

    @property
    def journeys(self) -> Journeys:
        assert self._journeys is not None, "prepare() first"
        return self._journeys

    @property
    def readers(self) -> Readers:
        assert self._readers is not None, "prepare_readers() first"
        return self._readers

    def prepare(self, plan: Plan) -> None:
        """The catalog's stocked products and id files, and the customers of the journeys,
        once every Bazaar process is seen to run this side's code."""
        programs = self.system.bazaar_programs()
        running = {n: pids for n, pids in self.system.processes().items() if n in programs}
        wrong = [name for name, pids in running.items() if not self.source.runs_in(pids[0])]
        if not running or wrong:
            raise SourceError(f"not running {self.source.label}'s code: {wrong or 'no process'}")
        self._catalog, _admin = prepare_catalog(self.system.url, self.folder)
        customers = Customers(self.system.url, self.folder)
        self._journeys = Journeys(plan, self.system, self._catalog, customers, self.folder)
        self._readers = Readers(customers, plan.readers)

    def prepare_readers(self, plan: Plan) -> None:
        stocked = self.catalog.stocked.read_text().split()
        self.readers.prepare(stocked, plan.reader_orders, plan.cart_items)

    def admin(self) -> Path:
        """A file with a fresh admin token, for product-create."""
        path = self.folder / "admin.txt"
        path.write_text(admin_token(self.system.url) + "\n")
        return path

    def kept(self, workload: str) -> Measured:
        """The round with the best headline figure."""

        def better(measured: Measured) -> float:
            _name, value, higher = headline(workload, measured.measurement)
            if value is None:
                return float("-inf")
            return value if higher else -value

        return max(self.rounds[workload], key=better)


def observe(system: Embedded | Scaled, workload: str, run: Run) -> Measured:
    """`run`'s measurement, with what the system's metrics and CPU said meanwhile."""
    watch = Watch(system.metrics_urls, system.processes, system.relay_urls)
    watch.start()
    try:
        measurement = run()
    finally:
        seen = watch.stop()
    measurement.observed, measurement.cpu = seen
    cpu = None
    if workload.startswith("checkout"):
        cpu = cpu_ms_per_order(measurement, watch.elapsed, system.bazaar_programs())
    return Measured(measurement, cpu)


def cpu_ms_per_order(m: Measurement, seconds: float, programs: set[str]) -> float | None:
    """CPU milliseconds of `programs` over `seconds`, per order settled meanwhile (the
    servers' own count, else the load generator's)."""
    settled = m.observed.orders_settled or m.settled
    if not settled:
        return None
    cores = sum(used for name, used in m.cpu.items() if name in programs)
    return round(cores * seconds * 1000 / settled, 2)


@dataclass
class ModeRun:
    """One mode's measurements, on this code and the baseline's."""

    mode: str
    plan: Plan
    result: ModeResult
    sides: list[Side]
    step: Step
    pairs: int = 0
    """Rounds measured so far on both codes: which goes first alternates with it."""

    @property
    def this(self) -> Side:
        return self.sides[0]

    def only_this(self, counts: Mapping[str, int] | None = None) -> Side:
        """This code's system, with `counts` instances in service; the baseline's idle."""
        for side in self.sides[1:]:
            side.system.park()
        self.this.system.use(counts)
        return self.this

    def measure_this(self, workload: str, run: Run) -> Measured:
        return observe(self.this.system, workload, run)

    def compare(
        self,
        workload: str,
        what: str,
        load: Load,
        counts: Mapping[str, int] | None = None,
        journey: bool = False,
    ) -> None:
        """`load` measured on each side (with `counts` instances in service), `plan.rounds`
        times when there is a baseline, once otherwise; the best round of each side is kept in
        the result. A request rate (wrk) runs `seconds` after `warm_seconds` of the same load;
        a `journey` (Locust) runs `journey_seconds`, its customers signed in beforehand."""
        plan = self.plan
        rounds = plan.rounds if len(self.sides) > 1 else 1
        seconds = plan.journey_seconds if journey else plan.seconds
        for number in range(rounds):
            order = self.sides if self.pairs % 2 == 0 else self.sides[::-1]
            self.pairs += 1
            for side in order:
                for other in self.sides:
                    if other is not side:
                        other.system.park()
                side.system.use(counts)
                self.step(f"{self.mode}: {what}{self._label(side, number, rounds)}")
                if not journey:
                    load(side, plan.warm_seconds)()
                measured = observe(side.system, workload, load(side, seconds))
                side.rounds.setdefault(workload, []).append(measured)
        self.keep(workload)

    def _label(self, side: Side, number: int, rounds: int) -> str:
        if len(self.sides) == 1:
            return ""
        code = "this code" if side is self.this else f"the {side.source.label}"
        return f", on {code}" + (f" (round {number + 1} of {rounds})" if rounds > 1 else "")

    def keep(self, workload: str) -> None:
        kept = self.this.kept(workload)
        self.result.workloads[workload] = kept.measurement
        if kept.cpu_ms_per_order is not None:
            self.result.cpu_ms_per_order[workload] = kept.cpu_ms_per_order
        if len(self.sides) == 1 or self.result.baseline is None:
            return
        baseline = self.sides[1]
        theirs = baseline.kept(workload)
        self.result.baseline.workloads[workload] = theirs.measurement
        if theirs.cpu_ms_per_order is not None:
            self.result.baseline.cpu_ms_per_order[workload] = theirs.cpu_ms_per_order
        self.result.baseline.rounds[workload] = [
            [headline(workload, ours.measurement)[1], headline(workload, other.measurement)[1]]
            for ours, other in zip(
                self.this.rounds[workload], baseline.rounds[workload], strict=True
            )
        ]
