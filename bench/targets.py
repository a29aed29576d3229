"""The issues' targets, as a run measured them (never asserted by a timed unit test)."""

from bench.comparison import against_baseline
from bench.results import Measurement, ModeResult, Run, Scaling, Target

HELLO_SHARE = 0.7
P99_MS_AT_70 = 10.0
EFFICIENCY = {"catalog": 0.9, "orders": 0.8}
AT_INSTANCES = 4
SETTLE_P99_MS = 250.0
"""Placed to settled, at half of checkout's peak (issue 12; it was 1 s)."""
SETTLE_IDLE_P50_MS = 50.0
"""Placed to settled, one order at a time on an idle shop (issue 12)."""
AGAINST_BASELINE = {
    ("order-read", "req/s"): (5.0, None),
    ("cart-read", "req/s"): (5.0, None),
    ("notifications-read", "req/s"): (5.0, None),
    ("product-create", "req/s"): (5.0, None),
    ("browse", "req/s"): (5.0, None),
    ("checkout", "settled orders/s"): (4.0, "embedded"),
    ("checkout", "CPU ms / settled order"): (4.0, "scaled"),
}
"""Issue 12's ratios to the commit it started from, when a run measured it: (workload,
figure) to (the least ratio, the one mode it applies to, or None for every mode)."""


READ_SHARES = {"order-read": 0.10, "cart-read": 0.08, "notifications-read": 0.10}
"""Issue 12's uncached reads on `bazaar dev`, as shares of hello world's rate in the same run:
the floors `bazaar bench --quick` guards in CI, where no baseline commit is measured (a share
of the same run's hello world holds across machines far better than a rate). A quick run
measured 0.157, 0.141 and 0.155 (the full run of record 0.230, 0.194, 0.217); reads through a
session, before `platform/queries.py`, measured about 0.10, 0.055 and 0.106 in a full run, so
two thirds of that in a quick one: under these floors."""


CHECKOUT_SHARE = 0.003
"""Issue 12's orders on `bazaar dev`: settled orders a second as a share of hello world's
requests a second in the same run, guarded by `bazaar bench --quick` in CI as READ_SHARES
are. Quick runs of this code measured 0.0044 to 0.0076 (the lowest on a machine whose hello
world ran three times as fast as another's, while its orders, which wait on the disk and on
five hops, did not), the report of record 0.0071; b01d6e7's, against the same hello world,
0.0013 to 0.0018. The floor sits between: a return towards the old path fails it, a quick
run's noise does not."""


def evaluate(run: Run) -> list[Target]:
    found: list[Target] = []
    for mode in run.modes.values():
        found += _cached_page(mode)
        found += _reads(mode)
        found += [_efficiency(scaling) for scaling in mode.scaling if _at(scaling)]
        found += _checkout(mode)
        found += _against_baseline(mode, (run.baseline or {}).get("ref") or "the baseline")
    return found


def _against_baseline(mode: ModeResult, baseline: str) -> list[Target]:
    found = []
    for row in against_baseline(mode):
        bound, only = AGAINST_BASELINE.get((row.workload, row.figure), (None, None))
        if bound is None or only not in (None, mode.mode):
            continue
        value = row.ratio
        better = "less" if not row.higher_is_better else ""
        found.append(
            Target(
                f"{mode.mode}: {row.workload} {row.figure} against {baseline}",
                round(value, 2) if value is not None else None,
                bound,
                f"x {better}".rstrip(),
                value is not None and value >= bound,
                f"{_figure(row.value)} vs {_figure(row.baseline)}",
            )
        )
    return found


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _cached_page(mode: ModeResult) -> list[Target]:
    found = []
    product = mode.workloads.get("product")
    if product and mode.hello and mode.hello.rps:
        share = product.rps / mode.hello.rps
        found.append(
            Target(
                f"{mode.mode}: cached GET /v1/products/{{id}} / hello world, same quota",
                round(share, 2),
                HELLO_SHARE,
                "x",
                share >= HELLO_SHARE,
                f"{product.rps:,.0f} vs {mode.hello.rps:,.0f} req/s",
            )
        )
    paced = [m for m in mode.latency_vs_load if m.workload == "product"]
    near = _nearest(paced, 0.7, product)
    if near is not None:
        found.append(
            Target(
                f"{mode.mode}: p99 of cached GET at 70% of peak",
                near.latency.p99,
                P99_MS_AT_70,
                "ms",
                near.latency.p99 < P99_MS_AT_70 and near.errors == 0,
                f"{near.rps:,.0f} req/s achieved ({near.rps / product.rps:.0%} of peak),"
                f" {near.offered_rps or 0:,.0f} offered",
            )
        )
    return found


def _reads(mode: ModeResult) -> list[Target]:
    if mode.mode != "embedded" or not (mode.hello and mode.hello.rps):
        return []
    found = []
    for workload, bound in READ_SHARES.items():
        measured = mode.workloads.get(workload)
        if measured is None:
            continue
        share = measured.rps / mode.hello.rps
        found.append(
            Target(
                f"{mode.mode}: {workload} / hello world",
                round(share, 3),
                bound,
                "x",
                share >= bound,
                f"{measured.rps:,.0f} vs {mode.hello.rps:,.0f} req/s",
            )
        )
    checkout = mode.workloads.get("checkout")
    if checkout is not None and checkout.orders_per_s is not None:
        share = checkout.orders_per_s / mode.hello.rps
        found.append(
            Target(
                f"{mode.mode}: checkout settled orders/s / hello world req/s",
                round(share, 4),
                CHECKOUT_SHARE,
                "x",
                share >= CHECKOUT_SHARE,
                f"{checkout.orders_per_s:,.1f} orders/s vs {mode.hello.rps:,.0f} req/s",
            )
        )
    return found


def _nearest(points: list[Measurement], fraction: float, peak: Measurement | None):
    if not points or peak is None or not peak.rps:
        return None
    return min(points, key=lambda p: abs(p.rps / peak.rps - fraction))


def _at(scaling: Scaling) -> Measurement | None:
    return next((p for p in scaling.points if p.instances == AT_INSTANCES), None)


def _efficiency(scaling: Scaling) -> Target:
    point = _at(scaling)
    assert point is not None
    value = scaling.efficiency(point)
    bound = EFFICIENCY.get(scaling.service, 0.8)
    return Target(
        f"scaled: {scaling.service} efficiency at {AT_INSTANCES} instances",
        round(value, 2),
        bound,
        "",
        value >= bound,
        f"{Scaling.throughput(point):,.1f}/s at {AT_INSTANCES} instances",
    )


def _checkout(mode: ModeResult) -> list[Target]:
    found = []
    runs = [m for n, m in mode.workloads.items() if n.startswith("checkout") or n == "mixed"]
    runs += [p for s in mode.scaling if s.service == "orders" for p in s.points]
    unsettled = sum(m.unsettled or 0 for m in runs)
    placed = sum((m.settled or 0) + (m.unsettled or 0) for m in runs)
    found.append(
        Target(
            f"{mode.mode}: every placed order settles",
            unsettled,
            0,
            "unsettled",
            unsettled == 0 and placed > 0,
            f"{placed:,} orders placed",
        )
    )
    idle = mode.workloads.get("settle-idle")
    if idle and idle.settle_ms:
        found.append(
            Target(
                f"{mode.mode}: p50 placed to settled, one order at a time on an idle shop",
                idle.settle_ms.p50,
                SETTLE_IDLE_P50_MS,
                "ms",
                idle.settle_ms.p50 < SETTLE_IDLE_P50_MS,
                f"{idle.settled or 0} orders, p99 {idle.settle_ms.p99:,.0f} ms",
            )
        )
    half = mode.workloads.get("checkout-half")
    exact = half.servers_settle_ms if half else None
    if half and exact:
        polled = f"; polled every 100 ms: {half.settle_ms.p99:,.0f}" if half.settle_ms else ""
        found.append(
            Target(
                f"{mode.mode}: p99 placed to settled at half of peak (the servers' timing)",
                exact.p99,
                SETTLE_P99_MS,
                "ms",
                exact.p99 < SETTLE_P99_MS,
                f"{half.orders_per_s or 0:.1f} orders/s{polled}",
            )
        )
    return found
