"""The report's plots: PNG files drawn with matplotlib's Agg canvas (no screen, no pyplot state)."""

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bench.results import Measurement, Scaling

DPI = 100
MOST_BARS = 14
"""Processes drawn one by one in a CPU plot; the rest share one bar."""


def _save(figure: Figure, path: Path) -> None:
    FigureCanvasAgg(figure)
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)


def throughput_unit(points: list[Measurement]) -> str:
    return "orders/s" if any(p.orders_per_s is not None for p in points) else "req/s"


def plot_scaling(scaling: Scaling, path: Path) -> None:
    """Throughput and efficiency against instances, each beside its ideal (linear) line."""
    points = sorted(scaling.points, key=lambda p: p.instances)
    instances = [p.instances for p in points]
    throughput = [scaling.throughput(p) for p in points]
    efficiency = [scaling.efficiency(p) for p in points]
    one = next((scaling.throughput(p) for p in points if p.instances == 1), None)
    unit = throughput_unit(points)

    figure = Figure(figsize=(10, 4))
    left, right = figure.subplots(1, 2)
    left.plot(instances, throughput, "o-", label="measured")
    if one:
        left.plot(instances, [n * one for n in instances], "--", color="grey", label="linear")
    left.set_xlabel("instances")
    left.set_ylabel(f"throughput ({unit})")
    left.set_title("Throughput")
    left.set_xticks(instances)
    left.set_ylim(bottom=0)
    left.legend()
    left.grid(alpha=0.3)

    right.plot(instances, efficiency, "o-", color="tab:green", label="measured")
    right.axhline(1.0, linestyle="--", color="grey", label="linear (1.0)")
    for n, value in zip(instances, efficiency, strict=True):
        right.annotate(f"{value:.2f}", (n, value), textcoords="offset points", xytext=(0, 6))
    right.set_xlabel("instances")
    right.set_ylabel("efficiency (1.0 = linear)")
    right.set_title("Efficiency: throughput(N) / (N x throughput(1))")
    right.set_xticks(instances)
    right.set_ylim(0, max([1.15, *(e * 1.15 for e in efficiency)]))
    right.legend(loc="lower left")
    right.grid(alpha=0.3)

    figure.suptitle(f"Scaling {scaling.service} ({scaling.workload}) against its instances")
    _save(figure, path)


def plot_latency(
    points: list[Measurement],
    peak: float | None,
    title: str,
    path: Path,
    baseline: list[Measurement] | None = None,
) -> None:
    """p50, p95 and p99 against the load achieved, with the hello-world baseline's p99 under
    the same kind of load when it was measured."""
    points = sorted(points, key=lambda p: p.rps)
    rates = [p.rps for p in points]

    figure = Figure(figsize=(7, 4.5))
    axes = figure.subplots()
    for name, marker in (("p50", "o"), ("p95", "s"), ("p99", "^")):
        values = [getattr(p.latency, name) for p in points]
        axes.plot(rates, values, marker=marker, label=name)
    everything = list(points)
    if baseline:
        baseline = sorted(baseline, key=lambda p: p.rps)
        axes.plot(
            [p.rps for p in baseline],
            [p.latency.p99 for p in baseline],
            linestyle=":",
            marker="^",
            color="grey",
            label="hello world p99",
        )
        everything += baseline
    if peak:
        axes.axvline(peak, linestyle="--", color="grey", label=f"peak {peak:,.0f} req/s")
    lowest = min((p.latency.p50 for p in everything if p.latency.p50 > 0), default=0)
    highest = max((p.latency.p99 for p in everything), default=0)
    if lowest and highest / lowest > 30:
        axes.set_yscale("log")
    else:
        axes.set_ylim(bottom=0)
    axes.set_xlabel("load achieved (req/s; each offered as a Poisson stream)")
    axes.set_ylabel("latency (ms)")
    axes.set_title(title)
    axes.legend()
    axes.grid(alpha=0.3, which="both")
    _save(figure, path)


def offered(point: Measurement) -> float:
    return point.offered_rps if point.offered_rps is not None else point.rps


def plot_cpu(point: Measurement, title: str, path: Path) -> None:
    """Cores used by each process, the heaviest on top, and the load generator's own bar."""
    ranked = sorted(point.cpu.items(), key=lambda item: item[1], reverse=True)
    shown = ranked[:MOST_BARS]
    rest = ranked[MOST_BARS:]
    if rest:
        shown.append((f"{len(rest)} others", sum(cores for _, cores in rest)))
    names = [name for name, _ in shown] + ["load generator"]
    cores = [value for _, value in shown] + [point.loadgen_cpu]
    colours = ["tab:blue"] * len(shown) + ["tab:orange"]

    figure = Figure(figsize=(7, 1.2 + 0.32 * len(names)))
    axes = figure.subplots()
    positions = list(range(len(names)))
    axes.barh(positions, cores, color=colours)
    for position, value in zip(positions, cores, strict=True):
        axes.annotate(
            f"{value:.2f}",
            (value, position),
            textcoords="offset points",
            xytext=(3, -3),
            fontsize=8,
        )
    axes.set_yticks(positions, names)
    axes.invert_yaxis()
    axes.set_xlabel("CPU (cores; 1.0 = one core busy)")
    axes.set_xlim(0, max([1.0, *cores]) * 1.15)
    axes.set_title(title)
    axes.grid(alpha=0.3, axis="x")
    _save(figure, path)
