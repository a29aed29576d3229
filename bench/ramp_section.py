"""The ramp's section of the capacity report: its verdicts against issue 16's targets and its
plot, from the ramp beside the report (ramp.json, ramp.png and ramp.md, written by `bazaar
bench ramp`; `--publish` puts the ramp of record beside docs/capacity/report.md). Written
last, so that `bench ramp --publish` replaces it (`ramp_report.link_in_report`) and `bench
report docs/capacity` keeps it."""

from pathlib import Path

from bench.ramp import RampResult, judge

PLOT = "ramp.png"
SECTION = "## Automatic scaling: the ramp"


def section_lines(result: RampResult) -> list[str]:
    """The section, headed by SECTION: a link to ramp.md, the plot, the verdicts."""
    lines = [
        "",
        SECTION,
        "",
        "From `bazaar bench ramp` ([ramp.md](ramp.md), its stages and scale events):"
        f" `up --autoscale catalog={result.minimum}..{result.maximum}`, {result.quota:g} core"
        f" per catalog instance, {result.stages[0].rate:g} to"
        f" {max(s.rate for s in result.stages):g} req/s and back.",
        "",
    ]
    return lines + plot_and_verdicts(result)


def plot_and_verdicts(result: RampResult) -> list[str]:
    """The ramp's plot and the table of its targets, as ramp.md and the capacity report show
    them."""
    lines = [f"![ramp]({PLOT})", "", "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {v.name} | {v.value} | {'yes' if v.met else 'NO'} |" for v in judge(result)]
    return lines


def section(folder: Path) -> list[str]:
    """The section for the report written in `folder`: none when no ramp is beside it."""
    if not (folder / "ramp.json").exists():
        return []
    return section_lines(RampResult.load(folder / "ramp.json"))
