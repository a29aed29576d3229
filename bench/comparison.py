"""One run's figures beside the previous run's (what got better, what regressed), and beside
the baseline commit's, measured in the same run."""

from dataclasses import dataclass, field

from bench import markdown
from bench.plots import throughput_unit
from bench.results import Measurement, ModeResult, Run, Scaling, headline

REGRESSION = 0.9
"""A figure below this ratio to the previous run's (1 = unchanged) is a regression."""


@dataclass
class Change:
    mode: str
    name: str
    previous: float
    value: float
    ratio: float | None
    """this / previous where higher is better, previous / this where lower is: below 1 is worse."""

    def show(self, figure: float) -> str:
        return f"{figure:.2f}" if self.name.endswith("efficiency") else markdown.number(figure)

    @property
    def regressed(self) -> bool:
        return self.ratio is not None and self.ratio < REGRESSION


def peaks(mode: ModeResult) -> list[tuple[str, Measurement]]:
    """The hello-world baseline first, then every workload's peak."""
    return ([("hello", mode.hello)] if mode.hello else []) + list(mode.workloads.items())


def compare(run: Run, previous: Run) -> list[Change]:
    """Every figure the two runs share, in this run's order."""
    before = _figures(previous)
    changes = []
    for (mode, name), (value, higher_is_better) in _figures(run).items():
        if (mode, name) not in before:
            continue
        old = before[(mode, name)][0]
        better, worse = (value, old) if higher_is_better else (old, value)
        changes.append(Change(mode, name, old, value, better / worse if worse else None))
    return changes


def _figures(run: Run) -> dict[tuple[str, str], tuple[float, bool]]:
    """(mode, figure) to (value, whether higher is better)."""
    figures: dict[tuple[str, str], tuple[float, bool]] = {}
    for mode in run.modes.values():
        for name, m in peaks(mode):
            unit = "orders/s" if m.orders_per_s is not None else "req/s"
            figures[(mode.mode, f"{name} {unit}")] = (Scaling.throughput(m), True)
            figures[(mode.mode, f"{name} p99 ms")] = (m.latency.p99, False)
            if m.settle_ms is not None:
                figures[(mode.mode, f"{name} settle p50 ms")] = (m.settle_ms.p50, False)
                figures[(mode.mode, f"{name} settle p99 ms")] = (m.settle_ms.p99, False)
            if name in mode.cpu_ms_per_order:
                cpu = mode.cpu_ms_per_order[name]
                figures[(mode.mode, f"{name} CPU ms / settled order")] = (cpu, False)
        for scaling in mode.scaling:
            unit = throughput_unit(scaling.points)
            for p in sorted(scaling.points, key=lambda p: p.instances):
                label = f"{scaling.service} x{p.instances}"
                figures[(mode.mode, f"{label} {unit}")] = (scaling.throughput(p), True)
                figures[(mode.mode, f"{label} efficiency")] = (scaling.efficiency(p), True)
    return figures


def summary(previous: Run, changes: list[Change]) -> list[str]:
    regressions = [c for c in changes if c.regressed]
    if not changes:
        return [f"The run of {previous.started_at} shares no measurement with this one.", ""]
    if not regressions:
        return [f"No regression against the run of {previous.started_at}.", ""]
    named = ", ".join(f"{c.mode} {c.name} ({markdown.ratio(c.ratio)})" for c in regressions)
    count = f"{len(regressions)} regression" + ("s" if len(regressions) > 1 else "")
    return [
        f"**{count}** against the run of {previous.started_at} (ratio below {REGRESSION}): "
        f"{named}.",
        "",
    ]


def section(run: Run, previous: Run, changes: list[Change]) -> list[str]:
    commit = previous.machine.get("git_commit") or previous.machine.get("commit")
    lines = [
        "## Compared with the previous run",
        "",
        f"The previous run started {previous.started_at}"
        + (f" (commit {commit})" if commit else "")
        + ". Ratio: this / previous for throughputs and efficiencies, previous / this for "
        f"latencies, so below 1.00 is worse; below {REGRESSION} is flagged as a regression.",
        "",
    ]
    differences = [
        f"{key}: {markdown.value(old.get(key))} → {markdown.value(new.get(key))}"
        for old, new in ((previous.machine, run.machine), (previous.settings, run.settings))
        for key in dict.fromkeys([*old, *new])
        if "load" not in key and old.get(key) != new.get(key)
    ]
    if differences:
        lines += ["What differs between the two runs: " + "; ".join(differences) + ".", ""]
    if not changes:
        return [*lines, "The two runs share no measurement.", ""]
    rows = [
        [
            c.mode,
            c.name,
            c.show(c.previous),
            c.show(c.value),
            markdown.ratio(c.ratio),
            "**REGRESSION**" if c.regressed else "",
        ]
        for c in changes
    ]
    return lines + markdown.table(["mode", "measurement", "previous", "this", "ratio", ""], rows)


@dataclass
class Against:
    """One figure of one workload: this code's beside the baseline commit's, same run."""

    mode: str
    workload: str
    figure: str
    baseline: float | None
    value: float | None
    higher_is_better: bool
    rounds: list[float | None] = field(default_factory=list)
    """The ratio in each round (of the headline figure only)."""
    p99_ms: tuple[float, float] | None = None
    """Request latency p99, the baseline's and this code's (with the headline figure)."""

    @property
    def ratio(self) -> float | None:
        return ratio(self.value, self.baseline, self.higher_is_better)


def ratio(value: float | None, baseline: float | None, higher_is_better: bool) -> float | None:
    """this / baseline where higher is better, baseline / this where lower is: above 1 is
    better."""
    better, worse = (value, baseline) if higher_is_better else (baseline, value)
    if better is None or not worse:
        return None
    return better / worse


def _against_figures(
    workload: str, m: Measurement, cpu_ms: float | None
) -> list[tuple[str, float | None, bool]]:
    found = [headline(workload, m)]
    if workload == "settle-idle":
        found.append(("settle p99 ms", m.settle_ms.p99 if m.settle_ms else None, False))
    if workload.startswith("checkout"):
        found.append(("CPU ms / settled order", cpu_ms, False))
    return found


def against_baseline(mode: ModeResult) -> list[Against]:
    """Every workload measured on both codes in `mode`: its headline figure first."""
    if mode.baseline is None:
        return []
    found = []
    for workload, theirs in mode.baseline.workloads.items():
        ours = mode.workloads.get(workload)
        if ours is None:
            continue
        mine = _against_figures(workload, ours, mode.cpu_ms_per_order.get(workload))
        before = _against_figures(workload, theirs, mode.baseline.cpu_ms_per_order.get(workload))
        for index, ((figure, value, higher), (_, old, _)) in enumerate(
            zip(mine, before, strict=True)
        ):
            row = Against(mode.mode, workload, figure, old, value, higher)
            if index == 0:
                pairs = mode.baseline.rounds.get(workload, [])
                row.rounds = [ratio(this, base, higher) for this, base in pairs]
                row.p99_ms = (theirs.latency.p99, ours.latency.p99)
            found.append(row)
    return found


def baseline_summary(run: Run) -> list[str]:
    """A line per mode: each workload's headline ratio to the baseline."""
    commit = (run.baseline or {}).get("ref") or "the baseline"
    lines = []
    for mode in run.modes.values():
        rows = against_baseline(mode)
        listed = [f"{a.workload} {markdown.ratio(a.ratio)}" for a in rows if a.p99_ms]
        listed += [
            f"CPU per settled order {markdown.ratio(a.ratio)}"
            for a in rows
            if a.workload == "checkout" and a.figure.startswith("CPU")
        ]
        if listed:
            lines.append(f"against {commit}, {mode.mode}: {', '.join(listed)}")
    return lines


def baseline_section(run: Run) -> list[str]:
    rows = [a for mode in run.modes.values() for a in against_baseline(mode)]
    if run.baseline is None and not rows:
        return []
    described = run.baseline or {}
    commit = str(described.get("commit") or "")[:12]
    baseline = described.get("ref") or "a commit"
    if commit:
        subject = described.get("subject")
        baseline += f" ({commit}: {subject})" if subject else f" ({commit})"
    this = run.machine.get("git_commit") or run.machine.get("commit")
    this_code = f"{this} with the working tree as it was" if this else "the working tree"
    rounds = run.settings.get("rounds") or 1
    lines = [
        "## Against the baseline commit",
        "",
        f"The baseline is {baseline}: its `src/` exported from git into the run's folder and"
        f" run with this run's virtualenv. This code is {this_code}. Both ran at once under"
        " the same quotas, and every workload was measured on the two in turn,"
        f" {rounds} round{'s' if rounds != 1 else ''} each, which code went first alternating"
        " (this, baseline, baseline, this...); each kept its best round. Ratio: this /"
        " baseline for throughput, baseline / this for latency and CPU per settled order, so"
        " above 1.00 is better. Per round: the headline figure's ratio in each round, a"
        " measure of the noise.",
        "",
    ]
    if not rows:
        return [*lines, "No workload was measured on both.", ""]
    table = [
        [
            a.mode,
            a.workload,
            a.figure,
            markdown.number(a.baseline),
            markdown.number(a.value),
            f"**{markdown.ratio(a.ratio)}**",
            ", ".join(markdown.ratio(r) for r in a.rounds),
            " / ".join(markdown.number(v) for v in a.p99_ms) if a.p99_ms else "",
        ]
        for a in rows
    ]
    head = ["mode", "workload", "figure", "baseline", "this", "ratio", "per round"]
    return lines + markdown.table([*head, "p99 ms (baseline / this)"], table)
