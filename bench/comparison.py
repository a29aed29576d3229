"""One run's figures beside the previous run's: what got better, what regressed."""

from dataclasses import dataclass

from bench import markdown
from bench.plots import throughput_unit
from bench.results import Measurement, ModeResult, Run, Scaling

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
