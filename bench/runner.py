"""One run of `bazaar bench`: a folder named by the time, every mode measured in turn with a
progress bar, the targets judged, the results and the report written."""

import os
import platform
import subprocess
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from bazaar.runtime.cluster.cpulimit import CpuGroups
from bench import source, targets, tracing_cost
from bench.experiment import run_mode
from bench.plan import Plan
from bench.results import Measurement, ModeResult, Run

QUICK_BOUNDS_MS = {
    "product": 100.0,
    "browse": 1000.0,
    "order-read": 1000.0,
    "cart-read": 1000.0,
    "notifications-read": 1000.0,
    "product-create": 2000.0,
    "settle-idle": 1000.0,
    "checkout": 2000.0,
    "mixed": 2000.0,
}
"""`--quick` fails when a workload's p99 passes these on a machine as fast as the reference
(generous: these are runs at saturation, bounds against stalls, not the targets)."""
QUICK_SETTLE_P99_MS = 3000.0
REFERENCE_HELLO_RPS = 11_000.0
"""The hello-world baseline (one core) of the machine the bounds were set on. A machine that
measures slower in the same run gets bounds that much longer: a run at saturation on a machine
at half the speed has twice the latency, whatever the code (one of these machines measured
5,056 req/s, and there the previous commit's browse p99 was 1,063 ms)."""


def machine_factor(mode: ModeResult) -> float:
    """How much slower than the reference this run's machine is (at least 1)."""
    hello = mode.hello.rps if mode.hello is not None else 0.0
    return max(1.0, REFERENCE_HELLO_RPS / hello) if hello > 0 else 1.0


def machine() -> dict:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent,
        check=False,
    ).stdout.strip()
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "commit": commit or None,
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }


def new_folder(runs_root: Path) -> Path:
    folder = runs_root / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    folder.mkdir(parents=True, exist_ok=False)
    return folder


def run(plan: Plan, folder: Path, step: Callable[[str], None], quick: bool) -> Run:
    """Every mode of `plan`, with the baseline commit's code beside this code's if it names
    one (its `src/` exported into the run's folder for the run, and removed afterwards), then
    what tracing costs if `plan.tracing`."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    result = Run(
        started_at=started,
        finished_at=started,
        machine=machine(),
        settings=asdict(plan) | {"quick": quick},
    )
    baseline = source.export(plan.baseline, folder / "baseline-source") if plan.baseline else None
    if baseline is not None:
        result.baseline = baseline.describe()
    groups = CpuGroups(f"bazaar-bench-{folder.name}")
    try:
        for mode in plan.modes:
            result.modes[mode] = run_mode(mode, plan, folder / mode, groups, step, baseline)
        if plan.tracing:
            result.tracing = tracing_cost.run_tracing(plan, folder / "tracing", groups, step)
    finally:
        groups.remove_all()
        if baseline is not None:
            source.remove(baseline)
    result.finished_at = datetime.now(UTC).isoformat(timespec="seconds")
    result.targets = targets.evaluate(result)
    result.save(folder / "results.json")
    return result


def smoke_failures(result: Run) -> list[str]:
    """What makes `--quick` fail: any error, an order that never settled, a latency bound,
    on this code or on the baseline's (a ratio to a failing baseline would mean nothing)."""
    found = []
    for mode in result.modes.values():
        slower = machine_factor(mode)
        found += _failures(mode.mode, mode.workloads, slower)
        if mode.baseline is not None:
            found += _failures(f"{mode.mode} baseline", mode.baseline.workloads, slower)
        for point in mode.latency_vs_load:
            if point.errors:
                found.append(f"{mode.mode} product at {point.offered_rps} req/s: errors")
    if result.tracing is not None:
        found += tracing_cost.failures(result.tracing)
    return found


def _failures(label: str, workloads: dict[str, Measurement], slower: float) -> list[str]:
    found = []
    for name, measurement in workloads.items():
        if measurement.errors:
            found.append(f"{label} {name}: {measurement.errors} error(s)")
        if measurement.unsettled:
            found.append(f"{label} {name}: {measurement.unsettled} order(s) never settled")
        bound = QUICK_BOUNDS_MS.get(name.removesuffix("-half"))
        if bound is not None and measurement.latency.p99 > bound * slower:
            found.append(
                f"{label} {name}: p99 {measurement.latency.p99:.1f} ms"
                f" > {bound * slower:.0f} ms ({bound:.0f} ms x {slower:.2f}, the machine)"
            )
        settle = measurement.settle_ms
        if settle is not None and settle.p99 > QUICK_SETTLE_P99_MS * slower:
            found.append(
                f"{label} {name}: settle p99 {settle.p99:.0f} ms"
                f" > {QUICK_SETTLE_P99_MS * slower:.0f} ms"
            )
    return found
