"""The measurements of one run, in order: for each mode, the hello-world baseline, the peak of
every workload, latency against load, and (scaled) the scaling of catalog reads and of
checkout over 1, 2, 4 and 8 instances, each instance under the same CPU quota.
"""

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from bench import loadgen, profile
from bench.customers import Customers
from bench.loadgen import Catalog
from bench.observe import Watch
from bench.results import Measurement, ModeResult, Scaling
from bench.systems import Embedded, Hello, Scaled, prepare_catalog

Step = Callable[[str], None]
"""Told what the run does next (the progress bar)."""


@dataclass(frozen=True)
class Plan:
    modes: tuple[str, ...] = ("embedded", "scaled")
    seconds: float = 10.0
    """Each request-rate measurement (wrk)."""
    journey_seconds: float = 20.0
    """Each journey measurement (Locust)."""
    products: int = 10_000
    instances: tuple[int, ...] = (1, 2, 4, 8)
    embedded_quota: float = 1.0
    catalog_quota: float = 0.25
    orders_quota: float = 0.1
    fractions: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
    connections: int = 64
    paced_connections: int = 256
    """Connections for a fixed rate: each waits a random pause between its requests, so more
    connections keep the server's latency a small part of each one's cycle and the rate
    achieved near the rate offered."""
    checkout_users_per_instance: int = 6
    mixed_users: int = 40
    warm_seconds: float = 2.0
    profile: bool = True
    """Sample every Bazaar process with py-spy under the product and checkout workloads."""

    @classmethod
    def quick(cls) -> "Plan":
        """About a minute: every workload once on `bazaar dev`, short."""
        return cls(
            modes=("embedded",),
            seconds=3.0,
            journey_seconds=6.0,
            products=500,
            fractions=(0.7,),
            checkout_users_per_instance=4,
            mixed_users=10,
            warm_seconds=1.0,
            profile=False,
        )

    def steps(self) -> int:
        """How many steps `run_mode` reports, for the progress bar."""
        rates = 3 + len(self.fractions)  # hello (and its fractions), product, browse, fractions
        journeys = 3  # checkout, checkout at half the peak, mixed
        count = 0
        if "embedded" in self.modes:
            count += 1 + rates + journeys
        if "scaled" in self.modes:  # checkout's peak is its scaling's best point
            count += 1 + rates + journeys - 1 + 2 * len(self.instances)
        return count + (2 * len(self.modes) if self.profile else 0)


def _measure(system: Embedded | Scaled, run: Callable[[], Measurement]) -> Measurement:
    """`run`'s measurement, with what the system's metrics and CPU said meanwhile."""
    watch = Watch(system.metrics_urls, system.processes, system.relay_urls)
    watch.start()
    try:
        measurement = run()
    finally:
        seen = watch.stop()
    measurement.observed, measurement.cpu = seen
    return measurement


def run_mode(mode: str, plan: Plan, folder: Path, groups, step: Step) -> ModeResult:
    folder.mkdir(parents=True, exist_ok=True)
    if mode == "embedded":
        system: Embedded | Scaled = Embedded(folder, plan.embedded_quota, groups)
        quota = plan.embedded_quota
    else:
        quotas = {"catalog": plan.catalog_quota, "orders": plan.orders_quota}
        system = Scaled(folder, quotas, max(plan.instances))
        quota = plan.catalog_quota
    result = ModeResult(mode=mode, quota_cores=quota)
    hello = Hello(folder, quota, groups)
    step(f"{mode}: starting (seeding {plan.products:,} products)")
    try:
        system.start(plan.products)
        hello.start()
        catalog, _admin = prepare_catalog(system.url, folder)
        _rates(result, plan, system, hello, catalog, step)
        if isinstance(system, Scaled):
            result.notes.append(
                "While catalog was scaled, orders ran 1 instance, and while orders was"
                " scaled, catalog ran 2: an idle instance still costs the machine about"
                " 0.03 core (readiness checks, replica monitors, metrics)."
            )
            _scale_catalog(result, plan, system, catalog, step)
        journeys = _Journeys(plan, system, catalog, Customers(system.url, folder), folder)
        _journeys(result, plan, system, journeys, step)
        if plan.profile:
            _profile(result, plan, system, catalog, journeys, folder, step)
    finally:
        hello.stop()
        system.stop()
    return result


def _rates(
    result: ModeResult,
    plan: Plan,
    system: Embedded | Scaled,
    hello: Hello,
    catalog: Catalog,
    step: Step,
) -> None:
    def wrk(url: str, mix: str, seconds: float, rate: float = 0.0) -> Measurement:
        connections = plan.paced_connections if rate else plan.connections
        return loadgen.wrk(url, mix, catalog, seconds, connections, rate)

    step(f"{result.mode}: hello-world baseline")
    wrk(hello.url, "hello", plan.warm_seconds)
    result.hello = wrk(hello.url, "hello", plan.seconds)
    result.hello.cpu = {"hello": 0.0}
    for fraction in plan.fractions:
        rate = round(result.hello.rps * fraction, 1)
        result.latency_vs_load.append(wrk(hello.url, "hello", plan.seconds, rate))
    hello.stop()
    if isinstance(system, Scaled):
        system.scale("catalog", 1)
        system.scale("orders", 1)
    step(f"{result.mode}: cached product pages, as fast as they are answered")
    wrk(system.url, "product", plan.warm_seconds)
    peak = _measure(system, lambda: wrk(system.url, "product", plan.seconds))
    result.workloads["product"] = peak
    for fraction in plan.fractions:
        step(f"{result.mode}: product pages at {fraction:.0%} of the peak")
        rate = round(peak.rps * fraction, 1)
        wrk(system.url, "product", plan.warm_seconds, rate)  # the connections, made
        point = _measure(system, lambda rate=rate: wrk(system.url, "product", plan.seconds, rate))
        result.latency_vs_load.append(point)
    if isinstance(system, Scaled):
        system.scale("catalog", max(plan.instances))
        system.scale("orders", max(plan.instances))
    step(f"{result.mode}: browsing (pages, listings, searches)")
    wrk(system.url, "browse", plan.warm_seconds)
    result.workloads["browse"] = _measure(system, lambda: wrk(system.url, "browse", plan.seconds))


def _scale_catalog(
    result: ModeResult, plan: Plan, system: Scaled, catalog: Catalog, step: Step
) -> None:
    points = []
    system.scale("orders", 1)  # idle instances cost the machine ~0.03 core each
    for count in plan.instances:
        step(f"scaled: catalog reads on {count} instance(s)")
        system.scale("catalog", count)
        loadgen.wrk(system.url, "product", catalog, plan.warm_seconds, plan.connections)
        point = _measure(
            system,
            lambda: loadgen.wrk(system.url, "product", catalog, plan.seconds, plan.connections),
        )
        points.append(replace(point, instances=count))
    result.scaling.append(Scaling("catalog", "product", points))
    system.scale("catalog", max(plan.instances))
    system.scale("orders", max(plan.instances))


@dataclass
class _Journeys:
    """Locust runs, each with its customers signed in beforehand."""

    plan: Plan
    system: Embedded | Scaled
    catalog: Catalog
    customers: Customers
    folder: Path
    runs: int = 0

    def __call__(self, journey: str, users: int, rate: float = 0.0, seconds: float = 0.0):
        self.runs += 1
        signed_in = self.customers.signed_in(users)
        failures = self.folder / f"locust-failures-{self.runs:02d}-{journey}.csv"
        return loadgen.locust(
            self.system.url,
            journey,
            self.catalog,
            seconds or self.plan.journey_seconds,
            users,
            rate=rate,
            customers=signed_in,
            failures=failures,
        )


def _journeys(
    result: ModeResult, plan: Plan, system: Embedded | Scaled, run: _Journeys, step: Step
) -> None:
    def checkout(users: int, rate: float = 0.0) -> Measurement:
        return _measure(system, lambda: run("checkout", users, rate))

    per_instance = plan.checkout_users_per_instance
    if isinstance(system, Scaled):
        points = []
        system.scale("catalog", 2)  # enough for the price quotes; the rest would idle
        for count in plan.instances:
            step(f"scaled: checkout on {count} orders instance(s)")
            system.scale("orders", count)
            points.append(replace(checkout(per_instance * count), instances=count))
        result.scaling.append(Scaling("orders", "checkout", points))
        system.scale("orders", max(plan.instances))
        system.scale("catalog", max(plan.instances))
        peak = max(points, key=lambda p: p.orders_per_s or 0.0)
        result.workloads["checkout"] = peak
    else:
        step("embedded: checkout, as fast as orders settle")
        peak = result.workloads["checkout"] = checkout(per_instance * 4)
    step(f"{result.mode}: checkout at half of its peak")
    half = round((peak.orders_per_s or 1.0) / 2, 2)
    result.workloads["checkout-half"] = checkout(peak.connections or per_instance, rate=half)
    step(f"{result.mode}: a storefront's day (mixed)")
    result.workloads["mixed"] = _measure(system, lambda: run("mixed", plan.mixed_users))


def _profile(
    result: ModeResult,
    plan: Plan,
    system: Embedded | Scaled,
    catalog: Catalog,
    journeys: _Journeys,
    folder: Path,
    step: Step,
) -> None:
    """Where the time goes, under the cached product page and under checkout at its peak."""
    seconds = min(plan.journey_seconds, 15.0)
    checkout = result.workloads["checkout"]
    loads: dict[str, Callable[[], object]] = {
        "product": lambda: loadgen.wrk(system.url, "product", catalog, seconds, plan.connections),
        "checkout": lambda: journeys("checkout", checkout.connections or 8, seconds=seconds),
    }
    for workload, load in loads.items():
        step(f"{result.mode}: profiling {workload} (py-spy)")
        bazaar = {
            name: pids[0]
            for name, pids in system.processes().items()
            if pids and _profiled(name, workload)
        }
        samples = folder / f"profile-{workload}"
        spies = profile.start(bazaar, seconds, samples)
        load()
        stacks = folder.parent / f"profile-{result.mode}-{workload}.txt"  # the run's folder
        found = profile.finish(spies, samples, stacks)
        result.notes += [f"{workload}: {line}" for line in found.lines()]
        if workload == "checkout":
            result.profile = found.stacks


def _profiled(program: str, workload: str) -> bool:
    """The processes a workload keeps busy: the one `bazaar dev`; under `bazaar up`, the
    catalog's instances for product pages, the orders instances and every worker for
    checkout (one py-spy per process: profiling every idle one too costs the machine)."""
    if program == "bazaar-dev":
        return True
    if workload == "product":
        return program.startswith("catalog-") and program != "catalog-worker"
    return program.startswith("orders-") or program.endswith("-worker")
