"""The capacity report of one `bazaar bench` run: report.md, its plots and results.json."""

from pathlib import Path

from bench import comparison, hops_section, markdown, ramp_section, tracing_section
from bench.comparison import Change, peaks
from bench.markdown import NONE, errors, ms, number, settle, share, table, value, with_unit
from bench.plots import offered, plot_cpu, plot_latency, plot_scaling, throughput_unit
from bench.results import ModeResult, Run, Scaling

LOADGEN_BOUND = 0.9
"""Cores of the one-threaded load generator past which it, not the server, sets the peak."""
TOP_PROCESSES = 5

MODES = {
    "embedded": "one `bazaar dev` process",
    "scaled": "`bazaar up`, every service behind HAProxy",
}
WORKLOADS = {
    "hello": "hello world (baseline)",
    "product": "cached product page",
    "browse": "browse",
    "settle-idle": "settle on an idle shop",
    "order-read": "order read",
    "cart-read": "cart read",
    "notifications-read": "notifications read",
    "product-create": "product create",
    "checkout": "checkout",
    "mixed": "mixed",
}


def write_report(run: Run, folder: Path, previous: Run | None = None) -> Path:
    """Write results.json, the plots and report.md into `folder`; return report.md's path."""
    folder.mkdir(parents=True, exist_ok=True)
    run.save(folder / "results.json")
    changes = comparison.compare(run, previous) if previous else []
    lines = _summary(run, previous, changes) + comparison.baseline_section(run)
    lines += tracing_section.section(run) + _machine(run)
    scaling_files = _scaling_files(run)
    for mode in run.modes.values():
        lines += _mode(mode, folder, scaling_files)
    if previous:
        lines += comparison.section(run, previous, changes)
    lines += ramp_section.section(folder)  # last: `bench ramp --publish` replaces it
    path = folder / "report.md"
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path


def against_baseline_lines(run: Run) -> list[str]:
    """A line per mode: each workload's ratio to the baseline commit (for the console)."""
    return comparison.baseline_summary(run)


def previous_run(runs_root: Path, current: Path, fallback: Path | None) -> Run | None:
    """The newest readable run under `runs_root` before `current`, else `fallback`, else None.

    Run folders are named by UTC time, so their names sort in time; a run redrawn in place is
    compared with the one before it. A run with the same start as `current` is not another run
    (the committed report is a copy of one), and an unreadable or old-format results.json is
    passed over.
    """
    current = current.resolve()
    own = _load(current / "results.json")
    folders = [f for f in runs_root.iterdir() if f.is_dir()] if runs_root.is_dir() else []
    if current.parent == runs_root.resolve():
        folders = [f for f in folders if f.name < current.name]
    candidates = [f / "results.json" for f in sorted(folders, key=lambda f: f.name, reverse=True)]
    for path in [*candidates, *([fallback] if fallback else [])]:
        run = _load(path)
        if run and not (own and run.started_at == own.started_at):
            return run
    return None


def redraw(folder: Path, runs_root: Path, fallback: Path | None) -> Path:
    """Rewrite report.md and the plots of the run in `folder` from its results.json."""
    run = Run.load(folder / "results.json")
    return write_report(run, folder, previous_run(runs_root, folder, fallback))


def _load(path: Path) -> Run | None:
    try:
        return Run.load(path)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _summary(run: Run, previous: Run | None, changes: list[Change]) -> list[str]:
    met = sum(t.met for t in run.targets)
    quick = run.settings.get("quick")
    lines = [
        f"# Capacity: `bazaar bench` run of {run.started_at}",
        "",
        f"From {run.started_at} to {run.finished_at}"
        + (" (quick run: short measurements, rough figures)." if quick else "."),
        "",
        "## Summary",
        "",
        f"Targets: {met} of {len(run.targets)} met." if run.targets else "No target was measured.",
        "",
    ]
    if run.targets:
        rows = [
            [
                t.name,
                with_unit(t.value, t.unit),
                with_unit(t.bound, t.unit),
                "met" if t.met else "**MISSED**",
                t.detail,
            ]
            for t in run.targets
        ]
        lines += table(["target", "value", "bound", "", "detail"], rows)
    for mode in run.modes.values():
        ratio = _ratio_to_hello(mode)
        figures = [
            f"{_describe(name)} "
            + (
                f"p50 / p99 {settle(m.settle_ms)} ms"
                if name == "settle-idle"
                else markdown.throughput(m)
            )
            + (f" ({ratio:.2f}x hello)" if name == "product" and ratio else "")
            for name, m in peaks(mode)
        ]
        described = MODES.get(mode.mode, mode.mode)
        lines.append(f"- **{mode.mode}** ({described}): {'; '.join(figures) or 'no peak'}.")
    lines += [f"- {line}." for line in comparison.baseline_summary(run)]
    lines.append("")
    if previous:
        lines += comparison.summary(previous, changes)
    return lines


def _machine(run: Run) -> list[str]:
    lines = ["## Machine and settings", ""]
    lines += table(["machine", ""], [[k, value(v)] for k, v in run.machine.items()])
    lines += table(["setting", ""], [[k, value(v)] for k, v in run.settings.items()])
    return lines


def _mode(mode: ModeResult, folder: Path, scaling_files: dict[tuple[str, str], str]) -> list[str]:
    quota = (
        f"Each instance under test, and the hello-world baseline, ran under a CPU quota of "
        f"{mode.quota_cores:g} core{'' if mode.quota_cores == 1 else 's'}."
        if mode.quota_cores
        else "No CPU quota: the processes shared every core of the machine."
    )
    lines = [f"## {mode.mode.capitalize()}: {MODES.get(mode.mode, mode.mode)}", "", quota, ""]
    lines += _peaktable(mode)
    for scaling in mode.scaling:
        name = scaling_files[(mode.mode, scaling.service)]
        plot_scaling(scaling, folder / name)
        lines += _scaling(scaling, name)
    measured = [m for m in mode.latency_vs_load if m.workload != "hello"]
    if measured:
        name = f"latency-{mode.mode}.png"
        workload = measured[0].workload
        peak = mode.workloads.get(workload)
        title = f"{mode.mode}: latency against load, {_describe(workload)}"
        hello = [m for m in mode.latency_vs_load if m.workload == "hello"]
        plot_latency(measured, peak.rps if peak else None, title, folder / name, hello)
        lines += _latency_vs_load(mode, name)
    lines += _observed(mode)
    lines += hops_section.section(mode)
    lines += _cpu(mode, folder)
    if mode.notes or mode.profile:
        lines += ["### Notes", ""] + [f"- {note}" for note in mode.notes]
        if mode.profile:
            lines.append(f"- Profile: [{mode.profile}]({mode.profile})")
        lines.append("")
    return lines


def _ratio_to_hello(mode: ModeResult) -> float | None:
    product = mode.workloads.get("product")
    if not (mode.hello and mode.hello.rps and product):
        return None
    return product.rps / mode.hello.rps


def _peaktable(mode: ModeResult) -> list[str]:
    lines = ["### Peaks", "", "Closed loop: as fast as the load generator goes.", ""]
    if not peaks(mode):
        return [*lines[:2], "No peak was measured.", ""]
    rows = [
        [
            _describe(name),
            number(m.rps),
            number(m.orders_per_s),
            *ms(m.latency),
            errors(m),
            number(m.loadgen_cpu),
            f"{m.tool}, {m.connections or NONE} conn., {m.seconds:g} s",
        ]
        for name, m in peaks(mode)
    ]
    head = ["workload", "req/s", "orders/s", "p50 ms", "p95 ms", "p99 ms", "errors"]
    lines += table([*head, "load generator (cores)", "how"], rows)
    ratio = _ratio_to_hello(mode)
    if ratio and mode.hello:
        product = mode.workloads["product"].rps
        lines += [
            f"The cached product page runs at **{ratio:.2f}x** the hello world "
            f"({number(product)} against {number(mode.hello.rps)} req/s).",
            "",
        ]
    for name, m in peaks(mode):
        if m.loadgen_cpu >= LOADGEN_BOUND:
            lines += [
                f"The load generator used {m.loadgen_cpu:.2f} cores on {_describe(name)}: it may "
                "have set that peak, not the server (the figure is a floor).",
                "",
            ]
    return lines


def _scaling(scaling: Scaling, image: str) -> list[str]:
    unit = throughput_unit(scaling.points)
    lines = [
        f"### Scaling: {scaling.service} ({_describe(scaling.workload)})",
        "",
        f"![Scaling of {scaling.service}]({image})",
        "",
        "Efficiency = throughput(N) / (N x throughput(1)); 1.00 is linear.",
        "",
    ]
    rows = [
        [
            str(p.instances),
            number(scaling.throughput(p)),
            f"{scaling.efficiency(p):.2f}",
            *ms(p.latency),
            errors(p),
            number(p.loadgen_cpu),
        ]
        for p in sorted(scaling.points, key=lambda p: p.instances)
    ]
    head = ["instances", unit, "efficiency", "p50 ms", "p95 ms", "p99 ms", "errors"]
    head.append("load generator (cores)")
    return lines + table(head, rows)


def _latency_vs_load(mode: ModeResult, image: str) -> list[str]:
    lines = ["### Latency against load", "", f"![Latency against load, {mode.mode}]({image})", ""]
    rows = []
    for m in sorted(mode.latency_vs_load, key=lambda m: (m.workload == "hello", offered(m))):
        peak = mode.hello if m.workload == "hello" else mode.workloads.get(m.workload)
        of_peak = f"{offered(m) / peak.rps:.0%}" if peak and peak.rps else NONE
        rows.append(
            [
                _describe(m.workload),
                number(m.offered_rps),
                of_peak,
                number(m.rps),
                *ms(m.latency),
                errors(m),
            ]
        )
    head = ["workload", "offered req/s", "of its peak", "achieved req/s", "p50 ms", "p95 ms"]
    head += ["p99 ms", "errors"]
    note = [
        "",
        "Each rate is offered as a Poisson stream over 256 connections (wrk, a random pause"
        " between a connection's requests). The hello-world rows are the same stack's baseline"
        " under the same quota, at the same shares of its own peak.",
        "",
    ]
    return lines + table(head, rows) + note


def _observed(mode: ModeResult) -> list[str]:
    rows = []
    for name, m in peaks(mode):
        seen = m.observed
        row = [
            share(seen.cache_hit_ratio),
            number(seen.queries_per_request),
            share(seen.replica_share),
            settle(seen.settle_ms),
            settle(m.settle_ms),
            number(m.unsettled),
            number(seen.outbox_backlog_max),
        ]
        if any(cell != NONE for cell in row):
            rows.append([_describe(name), *row])
    lines = ["### What the servers said", ""]
    if not rows:
        return [*lines, "The servers' metrics were not read in this mode.", ""]
    head = ["workload", "cache hit ratio", "queries / request", "replica share"]
    head += ["settle p50 / p99 ms (server)", "settle p50 / p99 ms (polling)", "unsettled"]
    return lines + table([*head, "outbox backlog max"], rows)


def _cpu(mode: ModeResult, folder: Path) -> list[str]:
    measured = [(name, m) for name, m in peaks(mode) if m.cpu]
    if not measured:
        return []
    heaviest, point = max(measured, key=lambda item: sum(item[1].cpu.values()))
    name = f"cpu-{mode.mode}.png"
    plot_cpu(point, f"{mode.mode}: CPU per process, {_describe(heaviest)} at peak", folder / name)
    lines = [
        "### CPU per process",
        "",
        f"![CPU per process, {mode.mode}, {heaviest}]({name})",
        "",
        f"The plot is of the heaviest workload, {_describe(heaviest)}. "
        "Cores: 1.0 is one core busy.",
        "",
    ]
    rows = []
    for workload, m in measured:
        top = sorted(m.cpu.items(), key=lambda item: item[1], reverse=True)[:TOP_PROCESSES]
        listed = ", ".join(f"{process} {cores:.2f}" for process, cores in top)
        total = sum(m.cpu.values())
        rows.append([_describe(workload), f"{total:.2f}", f"{m.loadgen_cpu:.2f}", listed])
    head = ["workload", "system under test", "load generator", "top processes"]
    lines += table(head, rows)
    if mode.cpu_ms_per_order:
        per_order = ", ".join(
            f"{_describe(name)} {number(ms)} ms" for name, ms in mode.cpu_ms_per_order.items()
        )
        lines += [
            "CPU per settled order (every Bazaar process, not the servers nor the load"
            f" generator, over the measurement, per order settled in it): {per_order}.",
            "",
        ]
    return lines


def _scaling_files(run: Run) -> dict[tuple[str, str], str]:
    """`scaling-<service>.png`, with the mode added where two modes scaled one service."""
    pairs = [(mode.mode, s.service) for mode in run.modes.values() for s in mode.scaling]
    services = [service for _, service in pairs]
    return {
        (mode, service): f"scaling-{service}-{mode}.png"
        if services.count(service) > 1
        else f"scaling-{service}.png"
        for mode, service in pairs
    }


def _describe(workload: str) -> str:
    return WORKLOADS.get(workload, workload)
