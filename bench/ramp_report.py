"""The ramp's plot and its section of the capacity report (`ramp.md`): on one time axis,
offered and achieved load, p99 latency, errors and the instances in service."""

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bench.ramp import P99_BOUND_MS, RampResult
from bench.ramp_section import PLOT, SECTION, plot_and_verdicts, section_lines

__all__ = ["PLOT", "SECTION", "link_in_report", "plot_ramp", "write_ramp_report"]


def plot_ramp(result: RampResult, path: Path) -> None:
    figure = Figure(figsize=(11, 9))
    load, latency, errors, instances = figure.subplots(4, 1, sharex=True)
    at = [s.at for s in result.samples]
    load.step(at, [s.offered for s in result.samples], where="post", label="offered")
    load.plot(at, [s.achieved for s in result.samples], label="achieved (HAProxy)")
    load.set_ylabel("req/s")
    load.set_ylim(bottom=0)
    load.legend(loc="upper left")
    load.set_title(
        f"catalog under `up --autoscale catalog={result.minimum}..{result.maximum}`,"
        f" {result.quota:g} core per instance, target {result.target:g} in flight"
    )

    middles = [(c.start + c.end) / 2 for c in result.chunks]
    latency.plot(middles, [c.p99_ms for c in result.chunks], "o-", markersize=3, label="p99 (wrk)")
    latency.axhline(P99_BOUND_MS, linestyle="--", color="grey", label=f"bound {P99_BOUND_MS:g} ms")
    latency.set_ylabel("p99 (ms)")
    latency.set_yscale("log")
    latency.legend(loc="upper left")

    errors.plot(at, [s.errors for s in result.samples], color="tab:red", label="HAProxy")
    errors.plot(middles, [c.errors / max(1.0, c.end - c.start) for c in result.chunks], "x",
                color="tab:purple", label="wrk")  # fmt: skip
    errors.set_ylabel("errors/s")
    errors.set_ylim(bottom=0, top=max([1.0, *(s.errors for s in result.samples)]) * 1.2)
    errors.legend(loc="upper left")

    instances.step(at, [s.in_service for s in result.samples], where="post", label="UP")
    instances.set_ylabel("catalog instances")
    instances.set_ylim(0, result.maximum + 0.5)
    flight = instances.twinx()
    flight.plot(at, [s.in_flight or 0 for s in result.samples], color="tab:orange", alpha=0.6,
                label="in flight per instance")  # fmt: skip
    flight.axhline(result.target, linestyle=":", color="tab:orange")
    flight.set_ylabel("in flight / instance")
    for event in result.events:
        instances.annotate(f"{event['before']}->{event['after']}", (event["at"], event["after"]),
                           textcoords="offset points", xytext=(2, 4), fontsize=7)  # fmt: skip
    instances.set_xlabel("seconds from the ramp's start")
    edge = 0.0
    for stage in result.stages:
        for axes in (load, latency, errors, instances):
            axes.axvline(edge, color="grey", alpha=0.2)
        edge += stage.seconds
    for axes in (load, latency, errors, instances):
        axes.grid(alpha=0.3)
    FigureCanvasAgg(figure)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def write_ramp_report(result: RampResult, folder: Path) -> Path:
    """ramp.md, ramp.png and ramp.json (which the capacity report's section reads)."""
    result.save(folder / "ramp.json")
    plot_ramp(result, folder / PLOT)
    lines = [
        "# The ramp: automatic scaling under a rising and falling load",
        "",
        f"`bazaar up --autoscale catalog={result.minimum}..{result.maximum}`, each catalog"
        f" instance held to {result.quota:g} core, the controller's target"
        f" {result.target:g} requests in flight per instance, scale-down window"
        f" {result.down_window:g} s. Product pages (wrk, Poisson arrivals at the offered rate,"
        " 256 connections), the rate stepped as below.",
        "",
    ]
    lines += plot_and_verdicts(result)
    lines += ["", "| from s | offered req/s | achieved req/s | p99 ms (worst chunk) | instances |"]
    lines.append("|---|---|---|---|---|")
    edge = 0.0
    for stage in result.stages:
        chunks = [c for c in result.chunks if edge <= c.start < edge + stage.seconds]
        samples = [s for s in result.samples if edge <= s.at < edge + stage.seconds]
        achieved = sum(c.achieved for c in chunks) / len(chunks) if chunks else 0.0
        worst = max((c.p99_ms for c in chunks), default=0.0)
        counts = sorted({s.in_service for s in samples})
        shown = (
            f"{counts[0]}..{counts[-1]}" if len(counts) > 1 else str(counts[0] if counts else "-")
        )
        lines.append(f"| {edge:.0f} | {stage.rate:g} | {achieved:.0f} | {worst:.1f} | {shown} |")
        edge += stage.seconds
    lines += ["", "Scale events (seconds from the start):", ""]
    lines += [
        f"- {e['at']:.0f} s: {e['before']} -> {e['after']} ({e['reason']})" for e in result.events
    ]
    path = folder / "ramp.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def link_in_report(report: Path, ramp: Path) -> None:
    """The ramp's plot and verdicts as the last section of the capacity report beside it
    (a section already there is replaced): `bench ramp --publish` and `bench --publish`
    both leave it there."""
    text = report.read_text().split(f"\n{SECTION}\n")[0].rstrip("\n")
    result = RampResult.load(ramp.with_suffix(".json"))
    report.write_text(text + "\n" + "\n".join(section_lines(result)) + "\n")
