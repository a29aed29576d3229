"""The chaos report: one row per scenario (what was lost, what the clients saw, how long the
recovery took), the violations if any, and a timeline plot per scenario: checkouts accepted
and reads served per second, errors per second by status, the fault marked.
"""

import json
import platform
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from chaos.runner import TIMELINE_BIN as BIN
from chaos.runner import Result

ZERO_COLUMNS = (
    ("lost", "lost"),
    ("double charges", "double_charges"),
    ("money kept", "kept_money"),
    ("stock drift", "stock_drift"),
    ("dup. notes", "duplicate_notifications"),
    ("missing notes/emails/hooks", None),
    ("dup. webhooks", "duplicate_webhooks"),
    ("dead letters", "dead_letters"),
)


def write(folder: Path, results: list[Result], quick: bool) -> Path:
    """results.json, one PNG per scenario and report.md in `folder`; the report's path."""
    (folder / "results.json").write_text(
        json.dumps({"quick": quick, "scenarios": [r.__dict__ for r in results]}, indent=1)
    )
    for result in results:
        plot_timeline(result, folder / f"timeline-{result.name}.png")
    path = folder / "report.md"
    path.write_text(markdown(results, quick))
    return path


def _missing(result: Result) -> int:
    return result.missing_notifications + result.missing_emails + result.missing_webhooks


def markdown(results: list[Result], quick: bool) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    passed = sum(r.passed for r in results)
    lines = [
        "# Chaos report",
        "",
        f"{'Quick run' if quick else 'Full run'} of `bazaar chaos`, {when}, on"
        f" {platform.node() or 'this machine'} ({platform.machine()}): {passed} of"
        f" {len(results)} scenarios kept every promise.",
        "",
        "Each scenario: a fresh set of products, shoppers checking out one order after another"
        " (every fourth card declined, every fifth order cancelled by its customer once"
        " accepted) and readers browsing, through HAProxy; one fault; the recovery; then every"
        " accepted order waited for and the promises checked in the databases, the mail"
        " sink and a webhook receiver (`chaos/invariants.py`). Recovery: from the fault's"
        " start until checkouts succeed again with no error after; settle: from the stream's"
        " end until every accepted order is settled, emailed and its webhook delivered.",
        "",
        "| scenario | fault | accepted | confirmed | cancelled | "
        + " | ".join(title for title, _ in ZERO_COLUMNS)
        + " | client answers | error window s | recovery s | settle s | kept |",
        "|" + "---|" * (9 + len(ZERO_COLUMNS)),
    ]
    for r in results:
        zeros = [
            str(_missing(r) if key is None else getattr(r, key)) for _title, key in ZERO_COLUMNS
        ]
        answers = ", ".join(f"{status}: {count}" for status, count in r.answers.items())
        lines.append(
            f"| {r.name} | {r.fault} | {r.accepted} | {r.confirmed} | {r.cancelled} | "
            + " | ".join(zeros)
            + f" | {answers} | {r.error_window:.1f} | {r.recovery:.1f} | {r.settle:.1f} |"
            f" {'yes' if r.passed else '**no**'} |"
        )
    lines += ["", "Emails sent again with the same Message-ID (allowed: at least once): "]
    lines[-1] += ", ".join(f"{r.name} {r.resent_emails}" for r in results) + "."
    failed = [r for r in results if r.violations]
    if failed:
        lines += ["", "## Violations", ""]
        for r in failed:
            lines += [f"- **{r.name}**:"] + [f"  - {v}" for v in r.violations[:20]]
    lines += ["", "## Timelines", ""]
    for r in results:
        lines += [f"### {r.name}", "", f"![{r.name}](timeline-{r.name}.png)", ""]
    return "\n".join(lines)


def plot_timeline(result: Result, path: Path) -> None:
    """Accepted checkouts and served reads per second above, errors per second by status
    below; the fault shaded."""
    ok: dict[str, Counter] = defaultdict(Counter)
    errors: dict[str, Counter] = defaultdict(Counter)
    for at, operation, status, count in result.timeline:
        slot = round(at / BIN)
        if 200 <= status < 300:
            ok[operation][slot] += count
        elif status != 409:
            errors["no answer" if status < 0 else str(status)][slot] += count
    end = max((round(at / BIN) for at, *_rest in result.timeline), default=0) + 1
    times = [slot * BIN for slot in range(end)]
    figure = Figure(figsize=(10, 5))
    top, bottom = figure.subplots(2, 1, sharex=True)
    for operation, label in (("checkout", "checkouts accepted"), ("browse", "reads served")):
        top.plot(times, [ok[operation][s] / BIN for s in range(end)], label=label)
    top.set_ylabel("per second")
    top.set_title(f"{result.name}: {result.fault}")
    for status, counts in sorted(errors.items()):
        bottom.plot(times, [counts[s] / BIN for s in range(end)], label=status)
    bottom.set_ylabel("errors per second")
    bottom.set_xlabel("seconds")
    marks = result.marks
    for axes in (top, bottom):
        axes.axvspan(marks["fault"], max(marks["fault over"], marks["fault"] + 0.2),
                     color="red", alpha=0.15, label="fault")  # fmt: skip
        axes.axvline(marks["fault"] + result.recovery, color="green", linestyle="--",
                     label="recovered")  # fmt: skip
        axes.legend(loc="upper right", fontsize="small")
    FigureCanvasAgg(figure)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
