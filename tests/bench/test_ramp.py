"""The ramp's schedule, its judging against issue 16's targets and its report, from results
made here (the ramp itself runs in `bazaar bench ramp`, minutes long)."""

from pathlib import Path

from bench.ramp import (
    P99_BOUND_MS,
    Chunk,
    RampResult,
    Sample,
    fewest_events,
    judge,
    schedule,
)
from bench.ramp_report import PLOT, SECTION, link_in_report, write_ramp_report


def test_the_schedule_rises_tenfold_holds_and_falls_back() -> None:
    stages = schedule(200.0)
    rates = [s.rate for s in stages]
    assert rates[0] == rates[-1] == 200.0
    assert max(rates) == 2000.0
    top = rates.index(max(rates))
    assert rates[: top + 1] == sorted(rates[: top + 1])  # rising
    assert rates[top:] == sorted(rates[top:], reverse=True)  # falling
    assert stages[top].seconds >= 60  # held
    assert (
        sum(s.seconds for s in schedule(200.0, stretch=0.5)) == sum(s.seconds for s in stages) / 2
    )


def test_fewest_events_follow_the_one_machine_policies() -> None:
    assert fewest_events(1, 1) == 0
    assert fewest_events(1, 3) == 1 + 1  # 1 -> 3; 3 -> 1 (half of 3 is 1, as the HPA rounds)
    assert fewest_events(1, 8) == 2 + 3  # 1 -> 5 -> 8; 8 -> 4 -> 2 -> 1
    assert fewest_events(1, 6, start=2) == 1 + 2  # 2 -> 6; 6 -> 3 -> 1


def ramp(p99: dict[int, float], errors: int = 0, back_at: float = 300.0) -> RampResult:
    """A made-up ramp of 2 stages of 40 s each, then 200 s at the base; chunks of 10 s with
    the p99 of `p99` by chunk start (else 10 ms); instances 1, then 3, then 1 at `back_at`."""
    result = RampResult(100.0, 0.1, 1, 4, 4.0, 60.0)
    result.stages = [*schedule(100.0)[:2], schedule(100.0)[-1]]
    result.stages = [
        type(s)(s.rate, secs) for s, secs in zip(result.stages, (40, 40, 200), strict=True)
    ]
    result.chunks = [
        Chunk(t, t + 10, 100.0, 100.0, p99.get(t, 10.0), errors if t == 0 else 0)
        for t in range(0, 280, 10)
    ]
    result.samples = [
        Sample(t, 100.0, 100.0, 0.0, 3 if 40 <= t < back_at else 1, 2.0) for t in range(0, 280)
    ]
    result.events = [
        {"at": 45.0, "before": 1, "after": 3, "reason": "up"},
        {"at": back_at, "before": 3, "after": 1, "reason": "down"},
    ]
    return result


def test_a_ramp_that_recovers_in_time_and_scales_back_meets_every_target() -> None:
    result = ramp({40: 400.0, 50: 150.0}, back_at=170.0)
    assert all(v.met for v in judge(result)), judge(result)


def test_a_failed_request_a_slow_recovery_or_a_late_scale_down_misses() -> None:
    failing = judge(ramp({}, errors=3, back_at=170.0))
    assert failing[0].name == "no failed request" and not failing[0].met
    slow = judge(ramp({40: 400.0, 50: 300.0, 60: 2 * P99_BOUND_MS, 70: 150.0}, back_at=170.0))
    assert not slow[1].met and slow[1].value == "40 s", slow
    late = judge(ramp({}, back_at=270.0))
    assert not late[-2].met and late[-2].value.startswith("190 s"), late


def test_the_report_plots_the_ramp_and_states_every_target(tmp_path: Path) -> None:
    result = ramp({40: 400.0}, back_at=170.0)
    result.save(tmp_path / "ramp.json")
    loaded = RampResult.load(tmp_path / "ramp.json")
    assert loaded == result
    written = write_ramp_report(loaded, tmp_path)
    assert (tmp_path / PLOT).stat().st_size > 10_000
    text = written.read_text()
    assert f"![ramp]({PLOT})" in text
    for verdict in judge(result):
        assert verdict.name in text
    assert "- 45 s: 1 -> 3 (up)" in text


def test_the_capacity_report_gets_the_ramp_once(tmp_path: Path) -> None:
    ramp_md = write_ramp_report(ramp({40: 400.0}, back_at=170.0), tmp_path)
    report = tmp_path / "report.md"
    report.write_text("# Capacity\n\nFigures.\n")
    link_in_report(report, ramp_md)
    link_in_report(report, ramp_md)
    text = report.read_text()
    assert text.startswith("# Capacity\n\nFigures.\n")
    assert text.count(SECTION) == 1
    assert (
        f"![ramp]({PLOT})" in text and "| no failed request | 0 (wrk), 0 (HAProxy) | yes |" in text
    )


def test_a_report_written_beside_a_ramp_ends_with_its_section(tmp_path: Path) -> None:
    from bench.report import write_report
    from tests.bench.test_report import a_run

    assert SECTION not in write_report(a_run(), tmp_path / "alone").read_text()
    write_ramp_report(ramp({40: 400.0}, back_at=170.0), tmp_path)
    text = write_report(a_run(), tmp_path).read_text()
    assert text.count(SECTION) == 1
    assert text.rstrip().splitlines()[-1].startswith("| no flapping:")  # the last section
    tail = text.split(SECTION)[1]
    assert (
        f"![ramp]({PLOT})" in tail and "| no failed request | 0 (wrk), 0 (HAProxy) | yes |" in tail
    )
    assert (tmp_path / PLOT).exists() and (tmp_path / "ramp.json").exists()
