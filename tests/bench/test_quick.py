"""`bazaar bench --quick` as CI runs it: every workload for a few seconds on `bazaar dev`, with
the real load generators (wrk, Locust), then the report with its plots."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.plan import COMPARED
from bench.results import Run
from bench.targets import READ_SHARES

BAZAAR = Path(sys.executable).parent / "bazaar"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    data = tmp_path_factory.mktemp("bench")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BAZAAR_")}
    done = subprocess.run(
        [str(BAZAAR), "bench", "--quick"],
        env=environment | {"BAZAAR_DATA_DIR": str(data)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    runs = sorted((data / "bench").iterdir())
    return done, runs[-1]


def test_the_smoke_passes_with_every_workload_measured(quick_run) -> None:
    done, folder = quick_run
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Smoke passed" in done.stderr
    run = Run.load(folder / "results.json")
    embedded = run.modes["embedded"]
    assert list(embedded.workloads) == list(COMPARED)
    for name, measurement in embedded.workloads.items():
        assert measurement.requests > 0, name
        assert measurement.errors == 0, name
        assert measurement.rps > 0, name
    assert embedded.hello is not None and embedded.hello.rps > 0
    assert embedded.latency_vs_load and embedded.latency_vs_load[0].offered_rps
    checkout = embedded.workloads["checkout"]
    assert checkout.settled and checkout.unsettled == 0
    assert checkout.settle_ms is not None and checkout.settle_ms.p50 > 0
    assert embedded.workloads["product"].observed.cache_hit_ratio > 0.5
    assert embedded.workloads["product"].cpu["bazaar-dev"] > 0
    assert embedded.cpu_ms_per_order["checkout"] > 0
    assert embedded.baseline is None


def test_orders_settle_one_at_a_time_on_an_idle_shop(quick_run) -> None:
    _done, folder = quick_run
    idle = Run.load(folder / "results.json").modes["embedded"].workloads["settle-idle"]
    assert idle.connections == 1
    assert idle.settled and idle.settled >= 3 and idle.unsettled == 0
    assert idle.settle_ms is not None and 0 < idle.settle_ms.p50 <= idle.settle_ms.p99


def test_the_progress_bar_counts_every_step(quick_run) -> None:
    done, _folder = quick_run
    steps = re.findall(r"^\[(\d+)/(\d+)\]", done.stderr, re.MULTILINE)
    assert steps, done.stderr[-3000:]
    done_steps, total = steps[-1]
    assert int(done_steps) == int(total) - 1 == len(steps) - 1


def test_the_report_comes_with_its_plots(quick_run) -> None:
    _done, folder = quick_run
    report = (folder / "report.md").read_text()
    assert "hello" in report.lower()
    plots = sorted(folder.glob("*.png"))
    assert plots, list(folder.iterdir())
    for plot in plots:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    targets = json.loads((folder / "results.json").read_text())["targets"]
    assert any("settles" in target["name"] and target["met"] for target in targets)


def test_the_reads_keep_their_speed(quick_run) -> None:
    """Issue 12's guard: the uncached reads and the settled orders hold their share of the same
    run's hello world, and an idle shop settles an order within its bound."""
    _done, folder = quick_run
    targets = {t["name"]: t for t in json.loads((folder / "results.json").read_text())["targets"]}
    guarded = [f"embedded: {workload} / hello world" for workload in READ_SHARES]
    guarded.append("embedded: p50 placed to settled, one order at a time on an idle shop")
    guarded.append("embedded: checkout settled orders/s / hello world req/s")
    for name in guarded:
        assert targets[name]["met"], targets[name]
