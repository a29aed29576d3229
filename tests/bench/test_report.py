"""The report of `bazaar bench`, written from a synthetic run: its Markdown, plots and results."""

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from bench import runner, targets
from bench.report import previous_run, redraw, write_report
from bench.results import (
    Baseline,
    Latency,
    Measurement,
    ModeResult,
    Observed,
    Run,
    Scaling,
    Target,
)

PNG = b"\x89PNG\r\n\x1a\n"
INSTANCES = (1, 2, 4, 8)
CATALOG = (1000, 1900, 3800, 6400)
"""Product pages per second: efficiency 1.00, 0.95, 0.95, 0.80."""
ORDERS = (50, 95, 180, 300)
"""Orders per second: efficiency 1.00, 0.95, 0.90, 0.75."""


def measurement(workload: str, rps: float, instances: int = 1, **extra) -> Measurement:
    p50 = 1000 / rps * 4
    return Measurement(
        workload=workload,
        tool="wrk",
        seconds=10,
        requests=int(rps * 10),
        rps=rps,
        errors=extra.pop("errors", 0),
        latency=Latency(p50=p50, p95=p50 * 2, p99=p50 * 3, max=p50 * 5),
        instances=instances,
        connections=64,
        loadgen_cpu=extra.pop("loadgen_cpu", 0.6),
        **extra,
    )


def checkout(orders_per_s: float, instances: int = 1) -> Measurement:
    return measurement(
        "checkout",
        orders_per_s,
        instances,
        orders_per_s=orders_per_s,
        settled=int(orders_per_s * 10),
        unsettled=0,
        settle_ms=Latency(p50=40, p95=80, p99=120, max=200),
    )


def mode(name: str, checkout_rate: float) -> ModeResult:
    observed = Observed(
        cache_hit_ratio=0.98,
        queries_per_request=0.02,
        replica_share=0.8,
        settle_ms=Latency(p50=35, p95=70, p99=110, max=190),
        outbox_backlog_max=12,
        orders_settled=800,
    )
    cpu = {f"catalog-{i}": 0.9 - i * 0.05 for i in range(8)}
    cpu |= {"orders-worker": 0.4, "haproxy": 0.3, "postgres": 0.5}
    result = ModeResult(
        mode=name,
        quota_cores=1.0,
        hello=measurement("hello", 13580),
        workloads={
            "product": measurement("product", 20370, observed=observed, cpu=cpu),
            "browse": measurement("browse", 470, errors=47),
            "checkout": replace(checkout(checkout_rate), observed=observed, cpu={"api": 0.9}),
        },
        latency_vs_load=[
            replace(measurement("product", rate * 0.99), offered_rps=rate)
            for rate in (2000, 5000, 10000, 15000, 19000)
        ],
        notes=[f"{name}: the load generator shared the two cores."],
    )
    if name == "scaled":
        result.scaling = [
            Scaling(
                "catalog",
                "product",
                [measurement("product", r, n) for n, r in zip(INSTANCES, CATALOG, strict=True)],
            ),
            Scaling(
                "orders",
                "checkout",
                [checkout(r, n) for n, r in zip(INSTANCES, ORDERS, strict=True)],
            ),
        ]
        result.profile = "profile-scaled.svg"
    return result


def a_run(started_at: str = "2026-11-29T11:22:33Z", checkout_rate: float = 80) -> Run:
    return Run(
        started_at=started_at,
        finished_at="2026-11-29T11:52:33Z",
        machine={"cores": 2, "cpu": "Test CPU", "git_commit": "abc1234", "loadavg": [0.5, 0.4]},
        settings={"quick": False, "seconds": 10, "products": 100000, "instances": [1, 2, 4, 8]},
        modes={"embedded": mode("embedded", checkout_rate), "scaled": mode("scaled", 90)},
        targets=[
            Target("catalog scales to 8 instances", 0.8, 0.7, "", True, "efficiency at 8"),
            Target("checkout orders per second", 80, 100, "orders/s", False),
        ],
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    previous = a_run("2026-11-28T09:00:00Z", checkout_rate=100)
    return write_report(a_run(), tmp_path_factory.mktemp("run"), previous)


def line_with(text: str, *needles: str) -> str:
    return next(line for line in text.splitlines() if all(n in line for n in needles))


def test_report_writes_markdown_results_and_every_plot_it_links(report: Path) -> None:
    folder = report.parent
    names = {p.name for p in folder.glob("*.png")}
    assert names == {
        "scaling-catalog.png",
        "scaling-orders.png",
        "latency-embedded.png",
        "latency-scaled.png",
        "cpu-embedded.png",
        "cpu-scaled.png",
    }
    for name in names:
        data = (folder / name).read_bytes()
        assert data.startswith(PNG)
        assert 10_000 < len(data) < 300_000
    linked = set(re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report.read_text()))
    assert linked == names
    assert Run.load(folder / "results.json") == a_run()


def test_scaling_tables_show_efficiency_against_one_instance(report: Path) -> None:
    text = report.read_text()
    assert "| 4 | 3,800 | 0.95 |" in text
    assert "| 8 | 6,400 | 0.80 |" in text
    assert "| 2 | 95 | 0.95 |" in text
    assert "| 8 | 300 | 0.75 |" in text
    assert "| instances | orders/s | efficiency |" in text


def test_summary_says_which_targets_were_met_and_missed(report: Path) -> None:
    text = report.read_text()
    assert "Targets: 1 of 2 met." in text
    assert "**MISSED**" in line_with(text, "checkout orders per second", "80 orders/s", "100")
    assert "| met |" in line_with(text, "catalog scales to 8 instances")


def test_cached_product_page_is_set_against_hello_world(report: Path) -> None:
    text = report.read_text()
    assert "**1.50x** the hello world (20,370 against 13,580 req/s)" in text
    assert "| 25% | 4,950 |" in line_with(text, "| 5,000 |")


def test_servers_cpu_notes_and_profile_are_reported(report: Path) -> None:
    text = report.read_text()
    assert "| 98.0% | 0.02 | 80.0% | 35 / 110 | 40 / 120 | 0 | 12 |" in text
    assert "catalog-0 0.90, catalog-1 0.85" in text
    assert "- scaled: the load generator shared the two cores." in text
    assert "[profile-scaled.svg](profile-scaled.svg)" in text


def test_a_figure_below_nine_tenths_of_the_previous_run_is_a_regression(report: Path) -> None:
    text = report.read_text()
    assert "## Compared with the previous run" in text
    row = line_with(text, "| embedded | checkout orders/s |")
    assert "| 100 | 80 | 0.80 | **REGRESSION** |" in row
    # Its latency grew with it: previous / this, 0.80 too.
    assert "**REGRESSION**" in line_with(text, "| embedded | checkout p99 ms |")
    assert "REGRESSION" not in line_with(text, "| scaled | checkout orders/s |")
    assert "**2 regressions** against the run of 2026-11-28T09:00:00Z" in text
    assert "| scaled | catalog x4 efficiency | 0.95 | 0.95 | 1.00 |  |" in text


def test_without_a_previous_run_there_is_no_comparison(tmp_path: Path) -> None:
    text = write_report(a_run(), tmp_path).read_text()
    assert "Compared with the previous run" not in text
    assert "regression" not in text.lower()
    assert "Against the baseline commit" not in text


def settle_idle(p50: float) -> Measurement:
    return replace(
        measurement("settle-idle", 8),
        tool="locust",
        connections=1,
        orders_per_s=2.5,
        settled=30,
        unsettled=0,
        latency=Latency(p50=5, p95=8, p99=12, max=20),
        settle_ms=Latency(p50=p50, p95=p50 * 1.5, p99=p50 * 2, max=p50 * 2.5),
    )


def with_baseline(run: Run) -> Run:
    """`run` with the baseline commit measured beside it, in both modes."""
    for result in run.modes.values():
        result.workloads["order-read"] = measurement("order-read", 800)
        result.workloads["settle-idle"] = settle_idle(30)
        result.cpu_ms_per_order = {"checkout": 40.0}
        result.baseline = Baseline(
            workloads={
                "product": measurement("product", 20370),
                "browse": measurement("browse", 94),
                "order-read": measurement("order-read", 200),
                "settle-idle": settle_idle(60),
                "checkout": checkout(20),
            },
            cpu_ms_per_order={"checkout": 160.0},
            rounds={"browse": [[470, 94], [450, 100]], "checkout": [[80, 20], [75, 25]]},
        )
    run.baseline = {
        "ref": "b01d6e7",
        "commit": "b01d6e7cc1550000000000000000000000000000",
        "subject": "tests: the retry's backoff",
    }
    run.settings["rounds"] = 2
    return run


@pytest.fixture(scope="module")
def against(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report(with_baseline(a_run()), tmp_path_factory.mktemp("baseline"))


def test_the_baseline_commit_is_set_beside_this_code_workload_by_workload(against: Path) -> None:
    text = against.read_text()
    section = text.split("## Against the baseline commit")[1].split("\n## ")[0]
    assert "b01d6e7 (b01d6e7cc155: tests: the retry's backoff)" in section
    assert "2 rounds each" in section
    # throughput: this / baseline; the ratio of each round beside it
    assert "| embedded | browse | req/s | 94 | 470 | **5.00** | 5.00, 4.50 |" in section
    assert "| scaled | order-read | req/s | 200 | 800 | **4.00** |" in section
    # latency and CPU: baseline / this, so above 1 is better too
    assert "| embedded | settle-idle | settle p50 ms | 60 | 30 | **2.00** |" in section
    assert "| embedded | settle-idle | settle p99 ms | 120 | 60 | **2.00** |" in section
    assert "| scaled | checkout | settled orders/s | 20 | 90 | **4.50** | 4.00, 3.00 |" in section
    assert "| scaled | checkout | CPU ms / settled order | 160 | 40 | **4.00** |" in section
    # every workload measured on both, and only those
    assert line_with(section, "| embedded | product | req/s |").endswith("| 0.59 / 0.59 |")
    assert "| mixed |" not in section
    assert "- against b01d6e7, embedded: product 1.00, browse 5.00, order-read 4.00" in text


def test_the_issues_ratios_to_the_baseline_are_targets(against: Path) -> None:
    found = {t.name: t for t in targets.evaluate(Run.load(against.parent / "results.json"))}
    browse = found["embedded: browse req/s against b01d6e7"]
    assert (browse.value, browse.bound, browse.met) == (5.0, 5.0, True)
    assert not found["embedded: order-read req/s against b01d6e7"].met
    assert found["embedded: checkout settled orders/s against b01d6e7"].value == 4.0
    assert "scaled: checkout settled orders/s against b01d6e7" not in found
    cpu = found["scaled: checkout CPU ms / settled order against b01d6e7"]
    assert (cpu.value, cpu.unit, cpu.met) == (4.0, "x less", True)
    assert "embedded: checkout CPU ms / settled order against b01d6e7" not in found
    idle = found["embedded: p50 placed to settled, one order at a time on an idle shop"]
    assert (idle.value, idle.bound, idle.met) == (30, 50, True)


def test_a_run_with_a_baseline_round_trips_and_newer_fields_are_passed_over(
    against: Path,
) -> None:
    path = against.parent / "results.json"
    assert Run.load(path) == with_baseline(a_run())
    data = json.loads(path.read_text())
    data["novel"] = 1
    data["modes"]["embedded"]["novel"] = 1
    data["modes"]["embedded"]["workloads"]["browse"]["novel"] = 1
    data["modes"]["embedded"]["workloads"]["browse"]["observed"]["novel"] = 1
    path.write_text(json.dumps(data))
    assert Run.load(path) == with_baseline(a_run())


def test_the_smoke_fails_on_an_error_of_the_baseline_too() -> None:
    run = with_baseline(a_run())
    run.modes["embedded"].workloads["browse"] = measurement("browse", 470)
    run.modes["scaled"].workloads["browse"] = measurement("browse", 470)
    run.modes["scaled"].baseline.workloads["browse"].errors = 3
    assert runner.smoke_failures(run) == ["scaled baseline browse: 3 error(s)"]


def test_previous_run_is_the_newest_other_readable_folder(tmp_path: Path) -> None:
    for name, started in (("20261127-100000", "old"), ("20261128-100000", "newer")):
        (tmp_path / name).mkdir()
        a_run(started).save(tmp_path / name / "results.json")
    (tmp_path / "20261129-080000").mkdir()
    (tmp_path / "20261129-080000" / "results.json").write_text('{"format": 0}')
    (tmp_path / "20261129-090000").mkdir()
    current = tmp_path / "20261129-112233"
    current.mkdir()
    a_run("current").save(current / "results.json")

    assert previous_run(tmp_path, current, None).started_at == "newer"
    # Redrawn in place, a run is compared with the one before it, not with a later one.
    assert previous_run(tmp_path, tmp_path / "20261128-100000", None).started_at == "old"


def test_previous_run_falls_back_to_the_committed_results_then_to_none(tmp_path: Path) -> None:
    runs, current = tmp_path / "runs", tmp_path / "runs" / "20261129-112233"
    current.mkdir(parents=True)
    a_run("current").save(current / "results.json")
    committed = tmp_path / "committed.json"

    assert previous_run(runs, current, committed) is None
    a_run("committed").save(committed)
    assert previous_run(runs, current, committed).started_at == "committed"
    # The committed report is a copy of a run: redrawing that run does not compare it with itself.
    a_run("current").save(committed)
    assert previous_run(runs, current, committed) is None


def test_redraw_rewrites_the_report_and_plots_from_results_json(tmp_path: Path) -> None:
    (tmp_path / "20261128-090000").mkdir()
    a_run("previous", checkout_rate=100).save(tmp_path / "20261128-090000" / "results.json")
    folder = tmp_path / "20261129-112233"
    folder.mkdir()
    a_run().save(folder / "results.json")

    path = redraw(folder, tmp_path, None)

    assert path == folder / "report.md"
    assert "**REGRESSION**" in path.read_text()
    assert (folder / "scaling-orders.png").read_bytes().startswith(PNG)


def test_run_round_trips_through_results_json(tmp_path: Path) -> None:
    run = a_run()
    run.save(tmp_path / "results.json")
    assert Run.load(tmp_path / "results.json") == run
    assert json.loads((tmp_path / "results.json").read_text())["format"] == run.format


def test_the_smokes_latency_bounds_stretch_with_a_slower_machine() -> None:
    def run_on(hello_rps: float, browse_p99: float) -> Run:
        browse = replace(
            measurement("browse", 240),
            latency=Latency(p50=280, p95=700, p99=browse_p99, max=browse_p99 * 1.2),
        )
        result = ModeResult(
            mode="embedded",
            quota_cores=1.0,
            hello=measurement("hello", hello_rps),
            workloads={"browse": browse},
        )
        return Run("2026-11-29T22:00:00Z", "2026-11-29T22:01:00Z", {}, {}, {"embedded": result})

    # a machine half as fast as the reference: a p99 of 1.5 s is within twice the bound
    assert runner.smoke_failures(run_on(runner.REFERENCE_HELLO_RPS / 2, 1500)) == []
    [stalled] = runner.smoke_failures(run_on(runner.REFERENCE_HELLO_RPS / 2, 2500))
    assert "browse: p99 2500.0 ms > 2000 ms" in stalled
    # a faster machine gets no tighter bound than the reference's
    assert runner.smoke_failures(run_on(runner.REFERENCE_HELLO_RPS * 2, 900)) == []


def test_the_settle_p99_at_half_of_peak_is_judged_by_the_servers_timing() -> None:
    """Polling every 100 ms adds up to a poll to each order: the target is judged by the
    orders workers' own histogram, the polled figure beside it."""
    run = a_run()
    polled = Latency(p50=120, p95=260, p99=310, max=400)
    exact = Observed(settle_ms=Latency(p50=30, p95=90, p99=140, max=0))
    half = replace(checkout(40), workload="checkout-half", settle_ms=polled, observed=exact)
    run.modes["embedded"].workloads["checkout-half"] = half
    (target,) = [t for t in targets.evaluate(run) if "half of peak" in t.name]
    assert (target.value, target.met) == (140, True)
    assert "polled every 100 ms: 310" in target.detail
    run.modes["embedded"].workloads["checkout-half"] = replace(half, observed=Observed())
    (target,) = [t for t in targets.evaluate(run) if "half of peak" in t.name]
    assert (target.value, target.met) == (310, False)  # no histogram: the polled figure
