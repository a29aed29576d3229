"""The measurements of one run, in order: for each mode, the hello-world baseline, the peak of
every workload, latency against load, and (scaled) the scaling of catalog reads and of
checkout over 1, 2, 4 and 8 instances, each instance under the same CPU quota.

With a baseline commit (`--baseline`), a second system runs that commit's code beside this
code's for the whole mode, and every workload's peak is measured on the two in turn: in each
round this code then the baseline, or the baseline then this code, the order alternating
(this, baseline, baseline, this, this, baseline...). On a machine that other work shares, a
disturbance then falls on both alike instead of on whichever ran during it, and a slow drift
cancels out over a pair of rounds; both systems stay up so that neither is measured fresh
from its start. Of the rounds, each code keeps its best: a shared machine only ever slows a
measurement down, so the best round is the least disturbed. While one code is measured, the
other idles; in scaled mode it is scaled down to one instance of each service (an idle
instance costs about 0.03 core). Latency against load, the scaling experiments and the
profiles are this code's alone.
"""

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from bazaar.runtime.cluster.cpulimit import CpuGroups
from bench import loadgen, profile
from bench.plan import Plan
from bench.results import Baseline, Measurement, ModeResult, Scaling
from bench.sides import Load, ModeRun, Run, Side, Step
from bench.source import THIS, Source
from bench.systems import Embedded, Hello, Scaled

ONE = {"catalog": 1, "orders": 1}


def _system(
    mode: str, plan: Plan, folder: Path, groups: CpuGroups, source: Source
) -> Embedded | Scaled:
    if mode == "embedded":
        return Embedded(folder, plan.embedded_quota, groups, source=source)
    quotas = {"catalog": plan.catalog_quota, "orders": plan.orders_quota}
    return Scaled(folder, quotas, max(plan.instances), source=source)


def run_mode(
    mode: str,
    plan: Plan,
    folder: Path,
    groups: CpuGroups,
    step: Step,
    baseline: Source | None = None,
) -> ModeResult:
    """Every measurement of `mode`, on this code and, if given, on `baseline`'s beside it
    (in `folder`/baseline)."""
    folder.mkdir(parents=True, exist_ok=True)
    sides = [Side(THIS, _system(mode, plan, folder, groups, THIS), folder)]
    if baseline is not None:
        theirs = folder / baseline.label
        theirs.mkdir(exist_ok=True)
        sides.append(Side(baseline, _system(mode, plan, theirs, groups, baseline), theirs))
    quota = plan.embedded_quota if mode == "embedded" else plan.catalog_quota
    result = ModeResult(mode=mode, quota_cores=quota, baseline=Baseline() if baseline else None)
    run = ModeRun(mode, plan, result, sides, step)
    hello = Hello(folder, quota, groups)
    each = " for this code and the baseline" if baseline else ""
    step(f"{mode}: starting (seeding {plan.products:,} products{each})")
    try:
        for side in sides:
            side.system.start(plan.products)
            side.prepare(plan)
        hello.start()
        step(f"{mode}: customers with orders, carts and notifications to read")
        for side in sides:
            side.prepare_readers(plan)
        _rates(run, hello)
        if mode == "scaled":
            result.notes.append(
                "While catalog was scaled, orders ran 1 instance, and while orders was"
                " scaled, catalog ran 2: an idle instance still costs the machine about"
                " 0.03 core (readiness checks, replica monitors, metrics)."
            )
            _scale_catalog(run)
        _reads(run)
        _journeys(run)
        if plan.profile:
            _profile(run, folder)
    finally:
        hello.stop()
        for side in sides:
            side.system.stop()
    return result


def _wrk(mix: str, connections: int) -> Load:
    return lambda side, seconds: (
        lambda: loadgen.wrk(side.system.url, mix, side.catalog, seconds, connections)
    )


def _rates(run: ModeRun, hello: Hello) -> None:
    plan, result, this = run.plan, run.result, run.only_this()

    def wrk(url: str, mix: str, seconds: float, rate: float = 0.0) -> Measurement:
        connections = plan.paced_connections if rate else plan.connections
        return loadgen.wrk(url, mix, this.catalog, seconds, connections, rate)

    run.step(f"{result.mode}: hello-world baseline")
    wrk(hello.url, "hello", plan.warm_seconds)
    result.hello = wrk(hello.url, "hello", plan.seconds)
    result.hello.cpu = {"hello": 0.0}
    for fraction in plan.fractions:
        rate = round(result.hello.rps * fraction, 1)
        result.latency_vs_load.append(wrk(hello.url, "hello", plan.seconds, rate))
    hello.stop()
    what = "cached product pages, as fast as they are answered"
    run.compare("product", what, _wrk("product", plan.connections), counts=ONE)
    peak = result.workloads["product"]
    for fraction in plan.fractions:
        run.step(f"{result.mode}: product pages at {fraction:.0%} of the peak")
        run.only_this(ONE)
        rate = round(peak.rps * fraction, 1)
        wrk(this.system.url, "product", plan.warm_seconds, rate)  # the connections, made
        point = run.measure_this(
            "product", lambda rate=rate: wrk(this.system.url, "product", plan.seconds, rate)
        )
        result.latency_vs_load.append(point.measurement)
    what = "browsing (pages, listings, searches)"
    run.compare("browse", what, _wrk("browse", plan.connections))


def _scale_catalog(run: ModeRun) -> None:
    plan, this = run.plan, run.this
    points = []
    for count in plan.instances:
        run.step(f"scaled: catalog reads on {count} instance(s)")
        run.only_this({"catalog": count, "orders": 1})  # idle instances cost ~0.03 core each
        loadgen.wrk(this.system.url, "product", this.catalog, plan.warm_seconds, plan.connections)
        point = run.measure_this(
            "product",
            lambda: loadgen.wrk(
                this.system.url, "product", this.catalog, plan.seconds, plan.connections
            ),
        )
        points.append(replace(point.measurement, instances=count))
    run.result.scaling.append(Scaling("catalog", "product", points))


def _reads(run: ModeRun) -> None:
    """An order at a time on an idle shop, then the signed-in reads and the admin's writes."""
    plan = run.plan
    run.compare(
        "settle-idle",
        "orders one at a time, placed to settled",
        lambda side, seconds: side.journeys.ready(
            "settle_idle",
            1,
            seconds=seconds,
            poll_seconds=plan.idle_poll_seconds,
            pause=plan.idle_pause_seconds,
        ),
        journey=True,
    )
    workloads = {
        "order-read": "customers reading their own orders",
        "cart-read": "customers reading their carts",
        "notifications-read": "customers reading their notifications",
        "product-create": "an admin creating products",
    }
    for mix, what in workloads.items():
        connections = plan.writer_connections if mix == "product-create" else plan.connections
        run.compare(mix, what, _signed_in(mix, connections))


def _signed_in(mix: str, connections: int) -> Load:
    def load(side: Side, seconds: float) -> Run:
        if mix == "product-create":
            callers = side.admin()
        else:
            callers = side.readers.callers(with_orders=mix == "order-read")
        return lambda: loadgen.wrk_signed_in(side.system.url, mix, callers, seconds, connections)

    return load


def _journeys(run: ModeRun) -> None:
    plan, result, this = run.plan, run.result, run.this
    per_instance = plan.checkout_users_per_instance

    def checkout(users: int) -> Load:
        return lambda side, _seconds: side.journeys.ready("checkout", users)

    if result.mode == "scaled":
        points = []
        for count in plan.instances:
            run.step(f"scaled: checkout on {count} orders instance(s)")
            run.only_this({"catalog": 2, "orders": count})  # catalog: enough for the quotes
            users = per_instance * count
            point = run.measure_this("checkout", this.journeys.ready("checkout", users))
            point.measurement = replace(point.measurement, instances=count)
            points.append(point)
        result.scaling.append(Scaling("orders", "checkout", [p.measurement for p in points]))
        best = max(points, key=lambda p: p.measurement.orders_per_s or 0.0)
        count = best.measurement.instances
        if len(run.sides) > 1:
            what = f"checkout on {count} orders instance(s), its best"
            counts = {"catalog": 2, "orders": count}
            run.compare("checkout", what, checkout(per_instance * count), counts, journey=True)
        else:
            this.rounds["checkout"] = [best]
            run.keep("checkout")
    else:
        what = "checkout, as fast as orders settle"
        run.compare("checkout", what, checkout(per_instance * 4), journey=True)

    def half(side: Side, _seconds: float) -> Run:
        peak = side.kept("checkout").measurement
        rate = round((peak.orders_per_s or 1.0) / 2, 2)
        return side.journeys.ready("checkout", peak.connections or per_instance, rate=rate)

    run.compare("checkout-half", "checkout at half of its peak", half, journey=True)
    run.compare(
        "mixed",
        "a storefront's day (mixed)",
        lambda side, _seconds: side.journeys.ready("mixed", plan.mixed_users),
        journey=True,
    )


def _profile(run: ModeRun, folder: Path) -> None:
    """Where the time goes, under the cached product page and under checkout at its peak."""
    plan, result, this = run.plan, run.result, run.only_this()
    system = this.system
    seconds = min(plan.journey_seconds, 15.0)
    checkout = result.workloads["checkout"]
    loads: dict[str, Callable[[], object]] = {
        "product": lambda: loadgen.wrk(
            system.url, "product", this.catalog, seconds, plan.connections
        ),
        "checkout": this.journeys.ready("checkout", checkout.connections or 8, seconds=seconds),
    }
    for workload, load in loads.items():
        run.step(f"{result.mode}: profiling {workload} (py-spy)")
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
