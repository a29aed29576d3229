"""The capacity report's table of a checkout's hops: the mean time of each, one order at a
time on an idle shop (`settle-idle`), where a hop's time is its CPU time and its own waits on
the disk or the mail server (nothing else competes), beside the baseline commit's where it
exported the histograms (issue 12 asks for the CPU per order hop by hop)."""

from bench.markdown import table
from bench.observe import PLACING
from bench.results import ModeResult

WORKLOAD = "settle-idle"


def section(mode: ModeResult) -> list[str]:
    measured = mode.workloads.get(WORKLOAD)
    hops = measured.observed.hop_ms if measured else None
    if not hops:
        return []
    baseline = mode.baseline.workloads.get(WORKLOAD) if mode.baseline else None
    before = (baseline.observed.hop_ms if baseline else None) or {}
    ordered = sorted(hops, key=lambda hop: (hop != PLACING, hop))
    rows = [
        [hop, f"{hops[hop]:,.2f}", f"{before[hop]:,.2f}" if hop in before else "-"]
        for hop in ordered
    ]
    rows.append(
        [
            "every hop",
            f"{sum(hops.values()):,.2f}",
            f"{sum(before.values()):,.2f}" if before else "-",
        ]
    )
    note = (
        ""
        if before
        else " The baseline commit exports no time per hop: docs/performance.md has its hops"
        " as measured by hand."
    )
    return [
        "### A checkout hop by hop",
        "",
        "Mean milliseconds of each hop, one order at a time on an idle shop (a hop's time is"
        " then its CPU time and its own waits on the disk or the mail server), from the"
        f" servers' own histograms, summed over every process.{note}",
        "",
        *table(["hop", "ms, this code", "ms, baseline"], rows),
        "",
    ]
