"""The capacity report's section on what tracing costs (bench/tracing_cost.py measures it), and
its line on the console."""

from bench import markdown
from bench.comparison import ratio
from bench.results import Measurement, Run, TracingCost, TracingSetting, headline

DESCRIBED = {"product": "cached product page", "checkout": "checkout"}


Figure = tuple[str, float | None, bool]
"""A figure's name, its value, and whether higher is better."""


def _figures(workload: str, m: Measurement, cpu_ms: float | None) -> list[Figure]:
    """The figures shown of `workload`, its headline first."""
    found = [headline(workload, m), ("p99 ms", m.latency.p99, False)]
    if workload == "checkout":
        found.append(("CPU ms / settled order", cpu_ms, False))
        exact = m.servers_settle_ms
        found.append(("settle p99 ms", exact.p99 if exact else None, False))
    return found


def _cost(value: float | None) -> str:
    """A ratio to tracing off, with what it loses or gains: `0.84 (-16%)`."""
    if value is None:
        return markdown.NONE
    change = value - 1
    sign = "-" if change < 0 else "+"
    return f"{value:.2f} ({sign}{abs(change):.0%})"


def _off(cost: TracingCost) -> TracingSetting | None:
    return next((s for s in cost.settings if s.sample_ratio is None), None)


def ratios(cost: TracingCost, workload: str) -> dict[str, float | None]:
    """Each traced setting's headline figure on `workload`, as a ratio to tracing off (setting /
    off where higher is better, off / setting where lower is: below 1.00 is a cost)."""
    off = _off(cost)
    if off is None or workload not in off.workloads:
        return {}
    _name, base, higher = headline(workload, off.workloads[workload])
    found = {}
    for setting in cost.settings:
        if setting is off or workload not in setting.workloads:
            continue
        value = headline(workload, setting.workloads[workload])[1]
        found[setting.name] = ratio(value, base, higher)
    return found


def section(run: Run) -> list[str]:
    """`## What tracing costs`, or nothing when the run did not measure it."""
    cost = run.tracing
    if cost is None:
        return []
    off = _off(cost)
    traced = [s for s in cost.settings if s is not off]
    rounds = f"{cost.rounds} round{'s' if cost.rounds != 1 else ''}"
    baseline = (run.baseline or {}).get("ref")
    against = (
        f'This run\'s is in "Against the baseline commit" ({baseline}): read it there.'
        if baseline
        else "This run had none: `bazaar bench --baseline COMMIT`, COMMIT the one before tracing."
    )
    lines = [
        "## What tracing costs",
        "",
        "Tracing off, at 1% and at 100% sampling, each on a `bazaar dev` of its own, seeded"
        f" alike, under a CPU quota of {cost.quota_cores:g} core: the two that trace exported"
        " by OTLP/HTTP to a sink of their own the bench ran on loopback (a receiver that counts"
        " the spans). Each workload was measured on the three in turn, the order reversed every"
        f" round (off, 1%, 100%, then 100%, 1%, off), {rounds}; each kept its best round. Ratio:"
        " the setting / off for throughput, off / the setting for latency and CPU, so below"
        " 1.00 is what tracing costs. Tracing off against the code before tracing is measured"
        f" by the baseline comparison, not here. {against}",
        "",
    ]
    if off is None or not off.workloads:
        return [*lines, "Tracing off was not measured.", ""]
    head = ["workload", "figure", "off"]
    head += [s.name for s in traced] + [f"{s.name} / off" for s in traced]
    rows = []
    for workload, m in off.workloads.items():
        base = _figures(workload, m, off.cpu_ms_per_order.get(workload))
        for index, (figure, value, higher) in enumerate(base):
            values, costs = [], []
            for setting in traced:
                theirs = setting.workloads.get(workload)
                found = (
                    _figures(workload, theirs, setting.cpu_ms_per_order.get(workload))[index][1]
                    if theirs
                    else None
                )
                values.append(markdown.number(found))
                shown = _cost(ratio(found, value, higher))
                costs.append(f"**{shown}**" if index == 0 else shown)
            described = DESCRIBED.get(workload, workload)
            rows.append([described, figure, markdown.number(value), *values, *costs])
    lines += markdown.table(head, rows)
    lines += _per_round(cost, off, traced)
    return lines + _spans(traced)


def _per_round(cost: TracingCost, off: TracingSetting, traced: list[TracingSetting]) -> list[str]:
    """The headline's ratio to off in each round: a measure of the noise."""
    parts = []
    for workload, base in off.rounds.items():
        higher = headline(workload, off.workloads[workload])[2]
        for setting in traced:
            values = setting.rounds.get(workload, [])
            each = [ratio(v, b, higher) for v, b in zip(values, base, strict=False)]
            shown = ", ".join(markdown.ratio(r) for r in each)
            parts.append(f"{DESCRIBED.get(workload, workload)} at {setting.name}: {shown}")
    if cost.rounds < 2 or not parts:
        return []
    return ["Each round's ratio to off (of the headline figure): " + "; ".join(parts) + ".", ""]


def _spans(traced: list[TracingSetting]) -> list[str]:
    lines = [
        "What the sinks received, the check that tracing was on: the spans that started during"
        " each kept round (about one a request on the cached page at 100%, a hundredth of that"
        " at 1%; a checkout's order is some tens). Tracing off had no sink.",
        "",
    ]
    rows = []
    for setting in traced:
        for workload, m in setting.workloads.items():
            spans = setting.spans.get(workload, 0)
            per = spans / m.requests if m.requests else None
            rows.append(
                [
                    setting.name,
                    DESCRIBED.get(workload, workload),
                    f"{m.requests:,}",
                    f"{spans:,}",
                    markdown.NONE if per is None else f"{per:.3f}",
                    f"{setting.spans_received:,}",
                ]
            )
    head = ["setting", "workload", "requests", "spans", "spans / request"]
    return lines + markdown.table([*head, "spans over the experiment"], rows)


def summary_lines(run: Run) -> list[str]:
    """A line for the console: each workload's headline ratio to off, and the spans received."""
    cost = run.tracing
    if cost is None:
        return []
    parts = []
    for workload in DESCRIBED:
        found = ratios(cost, workload)
        if found:
            listed = ", ".join(f"{name} {markdown.ratio(r)}" for name, r in found.items())
            parts.append(f"{DESCRIBED[workload]} {listed}")
    spans = ", ".join(
        f"{s.name} {s.spans_received:,}" for s in cost.settings if s.sample_ratio is not None
    )
    return [f"tracing against off: {'; '.join(parts)} (spans at the sinks: {spans})"]
