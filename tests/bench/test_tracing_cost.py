"""What tracing costs, as `bazaar bench` measures it: a tiny run of the experiment on three real
`bazaar dev` processes (off, 1%, 100%) exporting to the bench's own OTLP sinks, the real load
generators, and the capacity report's section with the ratios side by side."""

import os
from pathlib import Path

import pytest

from bazaar.runtime.cluster.cpulimit import CpuGroups
from bench import tracing_cost, tracing_section
from bench.plan import TRACED, Plan
from bench.report import write_report
from bench.results import Latency, Measurement, Run, TracingCost, TracingSetting

TINY = Plan(
    modes=(),
    seconds=1.0,
    journey_seconds=3.0,
    warm_seconds=1.0,
    products=50,
    connections=16,
    checkout_users_per_instance=1,
    rounds=1,
    profile=False,
)


@pytest.fixture(scope="module")
def cost(tmp_path_factory: pytest.TempPathFactory) -> TracingCost:
    folder = tmp_path_factory.mktemp("tracing")
    groups = CpuGroups(f"bazaar-test-tracing-{os.getpid()}")
    steps: list[str] = []
    try:
        return tracing_cost.run_tracing(TINY, folder, groups, steps.append)
    finally:
        groups.remove_all()


def _setting(cost: TracingCost, name: str) -> TracingSetting:
    return next(s for s in cost.settings if s.name == name)


def test_every_setting_serves_both_workloads_without_an_error(cost: TracingCost) -> None:
    assert [s.name for s in cost.settings] == ["off", "1%", "100%"]
    for setting in cost.settings:
        assert list(setting.workloads) == list(TRACED), setting.name
        for name, measurement in setting.workloads.items():
            assert measurement.requests > 0 and measurement.errors == 0, (setting.name, name)
        checkout = setting.workloads["checkout"]
        assert checkout.settled and checkout.unsettled == 0, setting.name
    assert tracing_cost.failures(cost) == []


def test_at_100_percent_the_sink_receives_about_a_span_per_cached_page(
    cost: TracingCost,
) -> None:
    full = _setting(cost, "100%")
    page = full.workloads["product"]
    assert 0.5 <= full.spans["product"] / page.requests <= 1.5, (full.spans, page.requests)
    # a checkout is a request, its SQL, its events and their handlers: many spans an order
    assert full.spans["checkout"] > full.workloads["checkout"].requests
    assert full.spans_received >= full.spans["product"] + full.spans["checkout"]


def test_at_1_percent_a_hundredth_as_many_and_off_none(cost: TracingCost) -> None:
    one, full = _setting(cost, "1%"), _setting(cost, "100%")
    per_page = one.spans["product"] / one.workloads["product"].requests
    assert per_page < 0.1 * full.spans["product"] / full.workloads["product"].requests
    assert one.spans_received > 0
    off = _setting(cost, "off")
    assert off.spans == {} and off.spans_received == 0


def test_the_report_sets_the_measured_ratios_side_by_side(
    cost: TracingCost, tmp_path: Path
) -> None:
    run = Run("2026-11-30T00:00:00+00:00", "2026-11-30T00:01:00+00:00", {}, {}, tracing=cost)
    report = write_report(run, tmp_path).read_text()
    assert "## What tracing costs" in report
    for workload in TRACED:
        for name, value in tracing_section.ratios(cost, workload).items():
            assert value is not None and value > 0, (workload, name)
            assert f"{value:.2f} (" in report
    assert Run.load(tmp_path / "results.json").tracing == cost


def _page(rps: float) -> Measurement:
    return Measurement("product", "wrk", 10.0, int(rps * 10), rps, 0, Latency(1, 2, 3, 4))


def _checkout(settled: int) -> Measurement:
    latency = Latency(100, 200, 300, 400)
    return Measurement(
        "checkout", "locust", 20.0, settled * 8, settled * 0.4, 0, latency, settled=settled
    )


def test_the_section_gives_each_setting_its_ratio_to_off_and_the_spans() -> None:
    settings = []
    for name, ratio, rps, settled, cpu in (
        ("off", None, 10_000.0, 400, 20.0),
        ("1%", 0.01, 9_800.0, 392, 20.5),
        ("100%", 1.0, 1_600.0, 280, 40.0),
    ):
        setting = TracingSetting(name, ratio)
        setting.workloads = {"product": _page(rps), "checkout": _checkout(settled)}
        setting.cpu_ms_per_order = {"checkout": cpu}
        setting.rounds = {"product": [rps * 0.9, rps], "checkout": [settled / 20, settled / 20]}
        if ratio is not None:
            setting.spans = {"product": int(rps * 10 * ratio), "checkout": settled * 60}
            setting.spans_received = 1_000_000
        settings.append(setting)
    run = Run("a", "b", {}, {}, baseline={"ref": "eb20a56"})
    run.tracing = TracingCost(1.0, 2, settings)
    text = "\n".join(tracing_section.section(run))
    assert "| cached product page | req/s | 10,000 | 9,800 | 1,600 | **0.98 (-2%)** |" in text
    assert "**0.16 (-84%)** |" in text
    assert (
        "| checkout | CPU ms / settled order | 20 | 20.5 | 40 | 0.98 (-2%) | 0.50 (-50%) |" in text
    )
    assert "eb20a56" in text
    assert "| 100% | cached product page | 16,000 | 16,000 | 1.000 |" in text
    assert "cached product page at 100%: 0.16, 0.16" in text
    lines = tracing_section.summary_lines(run)
    assert lines == [
        "tracing against off: cached product page 1% 0.98, 100% 0.16;"
        " checkout 1% 0.98, 100% 0.70 (spans at the sinks: 1% 1,000,000, 100% 1,000,000)"
    ]
