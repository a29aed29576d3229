"""Where the time goes: py-spy samples every Bazaar process while a workload runs, and the
samples are summed by package (sqlalchemy, asyncpg, aio_pika, bazaar...) and by function.

py-spy reads a running interpreter's stacks from outside (no change to the code, a few
per cent of overhead in `--nonblocking` mode); its `raw` output is one line per distinct
stack with its sample count (the "collapsed stacks" that flame graph tools and
speedscope.app read), which is all a summary needs. The busiest process's stacks are kept in
the run folder.
"""

import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

RATE = 47
"""Samples a second (an odd rate, so sampling does not beat with periodic work)."""


@dataclass
class Profile:
    samples: dict[str, int]
    """Process name -> samples in which it was running (not idle)."""
    by_package: Counter
    by_function: Counter
    stacks: str | None
    """The busiest process's collapsed stacks (file name in the run folder)."""

    def lines(self, top: int = 12) -> list[str]:
        """A summary for the report's notes."""
        total = sum(self.by_package.values()) or 1
        found = [
            "Profile (py-spy, active samples of every Bazaar process, by package of the"
            " innermost frame): "
            + ", ".join(
                f"{name} {count / total:.0%}" for name, count in self.by_package.most_common(top)
            )
        ]
        found.append(
            "Hottest functions (own time): "
            + "; ".join(
                f"{name} {count / total:.1%}" for name, count in self.by_function.most_common(top)
            )
        )
        return found


def _py_spy() -> str:
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if not found:
        raise RuntimeError("py-spy is not installed: pip install -e '.[bench]'")
    return found


def start(processes: dict[str, int], seconds: float, folder: Path) -> list[subprocess.Popen]:
    """One py-spy per process (and its subprocesses: granian's workers), raw output."""
    folder.mkdir(parents=True, exist_ok=True)
    spies = []
    for name, pid in processes.items():
        command = [_py_spy(), "record", "--pid", str(pid), "--duration", str(round(seconds))]
        command += ["--rate", str(RATE), "--nonblocking", "--subprocesses", "--full-filenames"]
        command += ["--format", "raw"]
        command += ["--output", str(folder / f"{name}.txt")]
        spies.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    return spies


def finish(spies: list[subprocess.Popen], folder: Path, keep: Path) -> Profile:
    for spy in spies:
        try:
            spy.wait(timeout=60)
        except subprocess.TimeoutExpired:
            spy.kill()
    samples: dict[str, int] = {}
    by_package: Counter = Counter()
    by_function: Counter = Counter()
    busiest, most = None, 0
    for raw in sorted(folder.glob("*.txt")):
        active = 0
        for line in raw.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            leaf = stack.rsplit(";", 1)[-1]
            active += count
            by_package[_package(leaf)] += count
            by_function[_function(leaf)] += count
        samples[raw.stem] = active
        if active > most:
            busiest, most = raw, active
    if busiest is not None:
        shutil.copyfile(busiest, keep)
    return Profile(samples, by_package, by_function, keep.name if busiest else None)


NATIVE = "native code (no Python frame)"
"""A process's own frame as the innermost one: a thread running without Python code, such
as granian's Rust threads answering HTTP."""


def _package(frame: str) -> str:
    """`function (path/to/site-packages/sqlalchemy/orm/session.py:123)` -> `sqlalchemy`."""
    if frame.startswith("process "):
        return NATIVE
    path = frame.rpartition("(")[2].rstrip(")").rpartition(":")[0]
    parts = Path(path).parts
    for marker in ("site-packages", "src"):
        if marker in parts:
            after = parts[parts.index(marker) + 1 :]
            if after:
                return after[0].removesuffix(".py")
    if "/lib/python" in path:
        return "python stdlib"
    return Path(path).stem or frame


def _function(frame: str) -> str:
    if frame.startswith("process "):
        return NATIVE
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rpartition(":")[0]
    parts = Path(path).parts
    for marker in ("site-packages", "src"):
        if marker in parts:
            path = "/".join(parts[parts.index(marker) + 1 :])
            break
    else:
        path = Path(path).name
    return f"{name} ({path})"
