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
from bench import targets
from bench.experiment import Plan, run_mode
from bench.results import Run

QUICK_BOUNDS_MS = {"product": 100.0, "browse": 500.0, "checkout": 2000.0, "mixed": 2000.0}
"""`--quick` fails when a workload's p99 passes these (generous: CI machines are busy)."""
QUICK_SETTLE_P99_MS = 3000.0


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
    started = datetime.now(UTC).isoformat(timespec="seconds")
    result = Run(
        started_at=started,
        finished_at=started,
        machine=machine(),
        settings=asdict(plan) | {"quick": quick},
    )
    groups = CpuGroups(f"bazaar-bench-{folder.name}")
    try:
        for mode in plan.modes:
            result.modes[mode] = run_mode(mode, plan, folder / mode, groups, step)
    finally:
        groups.remove_all()
    result.finished_at = datetime.now(UTC).isoformat(timespec="seconds")
    result.targets = targets.evaluate(result)
    result.save(folder / "results.json")
    return result


def smoke_failures(result: Run) -> list[str]:
    """What makes `--quick` fail: any error, an order that never settled, a latency bound."""
    found = []
    for mode in result.modes.values():
        for name, measurement in mode.workloads.items():
            if measurement.errors:
                found.append(f"{mode.mode} {name}: {measurement.errors} error(s)")
            if measurement.unsettled:
                found.append(f"{mode.mode} {name}: {measurement.unsettled} order(s) never settled")
            bound = QUICK_BOUNDS_MS.get(name.removesuffix("-half"))
            if bound is not None and measurement.latency.p99 > bound:
                found.append(
                    f"{mode.mode} {name}: p99 {measurement.latency.p99:.1f} ms > {bound:.0f} ms"
                )
            settle = measurement.settle_ms
            if settle is not None and settle.p99 > QUICK_SETTLE_P99_MS:
                found.append(
                    f"{mode.mode} {name}: settle p99 {settle.p99:.0f} ms"
                    f" > {QUICK_SETTLE_P99_MS:.0f} ms"
                )
        for point in mode.latency_vs_load:
            if point.errors:
                found.append(f"{mode.mode} product at {point.offered_rps} req/s: errors")
    return found
