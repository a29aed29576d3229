"""A checkout's hops as the bench reads them from the servers' histograms, and their table in
the report."""

from bench import hops_section
from bench.observe import PLACING, Samples, hop_ms
from bench.results import Baseline, Latency, Measurement, ModeResult, Observed


def sample(name: str, value: float, **labels: str) -> tuple[tuple[str, tuple], float]:
    return (name, tuple(sorted(labels.items()))), value


def test_each_hop_is_its_histograms_mean_summed_over_processes() -> None:
    delta: Samples = dict(
        [
            sample("bazaar_event_handle_seconds_sum", 0.006, consumer="orders", event="a.b"),
            sample("bazaar_event_handle_seconds_count", 2, consumer="orders", event="a.b"),
            sample("bazaar_job_seconds_sum", 0.004, kind="email"),
            sample("bazaar_job_seconds_count", 1, kind="email"),
            sample(
                "bazaar_http_request_duration_seconds_sum",
                0.02,
                method="POST",
                route="/v1/orders",
                status="202",
            ),
            sample(
                "bazaar_http_request_duration_seconds_count",
                4,
                method="POST",
                route="/v1/orders",
                status="202",
            ),
            sample(
                "bazaar_http_request_duration_seconds_sum",
                9.0,
                method="GET",
                route="/v1/orders",
                status="200",
            ),
            sample(
                "bazaar_http_request_duration_seconds_count",
                9,
                method="GET",
                route="/v1/orders",
                status="200",
            ),
            sample("bazaar_event_handle_seconds_bucket", 2, consumer="x", event="y", le="1"),
            sample("bazaar_job_seconds_sum", 0.0, kind="idle"),
            sample("bazaar_job_seconds_count", 0, kind="idle"),
        ]
    )
    assert hop_ms(delta) == {"orders: a.b": 3.0, "job: email": 4.0, PLACING: 5.0}
    assert hop_ms({}) is None


def test_the_report_sets_the_hops_beside_the_baseline_where_it_has_them() -> None:
    def idle(hops: dict[str, float] | None) -> Measurement:
        return Measurement(
            "settle-idle",
            "locust",
            10,
            10,
            1.0,
            0,
            Latency(1, 1, 1, 1),
            observed=Observed(hop_ms=hops),
        )

    mode = ModeResult(
        "embedded", None, workloads={"settle-idle": idle({PLACING: 2.5, "orders: x": 1.0})}
    )
    lines = "\n".join(hops_section.section(mode))
    assert f"| {PLACING} | 2.50 | - |" in lines and "| every hop | 3.50 | - |" in lines
    assert "exports no time per hop" in lines
    mode.baseline = Baseline(workloads={"settle-idle": idle({PLACING: 5.0})})
    lines = "\n".join(hops_section.section(mode))
    assert f"| {PLACING} | 2.50 | 5.00 |" in lines and "| orders: x | 1.00 | - |" in lines
    assert hops_section.section(ModeResult("embedded", None)) == []
