"""The issue's targets, as a run measured them (never asserted by a timed unit test)."""

from bench.results import Measurement, ModeResult, Run, Scaling, Target

HELLO_SHARE = 0.7
P99_MS_AT_70 = 10.0
EFFICIENCY = {"catalog": 0.9, "orders": 0.8}
AT_INSTANCES = 4
SETTLE_P99_MS = 1000.0


def evaluate(run: Run) -> list[Target]:
    found: list[Target] = []
    for mode in run.modes.values():
        found += _cached_page(mode)
        found += [_efficiency(scaling) for scaling in mode.scaling if _at(scaling)]
        found += _checkout(mode)
    return found


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
    half = mode.workloads.get("checkout-half")
    if half and half.settle_ms:
        found.append(
            Target(
                f"{mode.mode}: p99 placed to settled at half of peak",
                half.settle_ms.p99,
                SETTLE_P99_MS,
                "ms",
                half.settle_ms.p99 < SETTLE_P99_MS,
                f"{half.orders_per_s or 0:.1f} orders/s, polled every 100 ms",
            )
        )
    return found
