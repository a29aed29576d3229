"""CPU quotas for `bazaar up`'s processes: a control group (cgroup) per program, under one
parent group per `up` folder.

Hand-written, because supervisord has no cgroup support and a cgroup is a few files: a folder
per group, its quota in one file, its processes in another. A program joins its group through
a wrapper that supervisord runs: `sh` writes its own pid into the group, then `exec`s the
command, which keeps that pid (supervisord's stop and `stopasgroup` still reach it) and the
group (granian's forked workers inherit it).

Both layouts are handled: cgroup v2 (one tree; `cpu.max` holds "QUOTA PERIOD", `cpu.stat` the
usage in µs) and v1 (a tree per controller: `cpu/` holds `cpu.cfs_quota_us` and
`cpu.cfs_period_us`, `cpuacct/` the usage in ns, in the same folder when both controllers are
mounted together, else in a group of the same path that the wrapper joins too).
"""

import errno
import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 10_000
"""The quota is given per 10 ms, not the kernel's default of 100 ms. A group that spends its
quota early in a period waits, runnable but not run, until the next period: with 100 ms and a
quarter of a core, a burst that uses 25 ms of CPU at once holds every request behind it for
up to 75 ms, so p99 latency jumps by tens of milliseconds while the mean hardly moves. With
10 ms the longest wait is 10 ms minus the quota."""
MIN_QUOTA_US = 1_000
"""The kernel refuses a smaller quota: below 0.1 core the period grows to keep 1 ms."""
MIN_CORES = 0.01
MAX_CORES = 64.0
NEEDED = (
    "CPU quotas need a writable cgroup cpu controller: cgroup v2 with `cpu` listed in"
    " {root}/cgroup.controllers, or cgroup v1 with {root}/cpu mounted read-write; and the"
    " right to make groups there (root, or a delegated cgroup). Or run without --cpu-quota."
)


class CpuLimitError(RuntimeError):
    """No CPU quota can be set here; the message says what is needed."""


def period_and_quota(cores: float) -> tuple[int, int]:
    """The period and quota, in µs, that hold a group to `cores` CPUs."""
    period = max(PERIOD_US, math.ceil(MIN_QUOTA_US / cores))
    return period, round(cores * period)


def root_name(data_dir: Path) -> str:
    """The parent group of one `up` folder: the same name at every `up` and `down`."""
    return "bazaar-" + hashlib.sha256(str(data_dir).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class _Hierarchy:
    version: int
    cpu: Path
    """Where groups with a CPU quota are made."""
    accounting: Path | None
    """v1's tree that counts CPU time: `cpu` itself when cpuacct is mounted with it, else
    cpuacct's own (whose groups are joined too); None without cpuacct."""


def _detect(root: Path) -> _Hierarchy | None:
    controllers = root / "cgroup.controllers"
    if controllers.is_file() and "cpu" in controllers.read_text().split():
        return _Hierarchy(2, root, None)
    if (root / "cpu" / "cpu.cfs_quota_us").is_file():
        counting = [
            tree for tree in (root / "cpu", root / "cpuacct") if (tree / "cpuacct.usage").is_file()
        ]
        return _Hierarchy(1, root / "cpu", counting[0] if counting else None)
    return None


@dataclass(frozen=True)
class CpuGroup:
    """One program's group; its processes share `cores` CPUs."""

    path: Path
    """Its folder in the tree that holds the quota."""
    version: int
    joins: tuple[Path, ...]
    """The `cgroup.procs` files a process is written to (v1 with cpuacct apart: two)."""
    usage_file: Path | None

    def wrap(self, command: Sequence[str]) -> list[str]:
        """`command` run inside the group, under the same pid."""
        if len(self.joins) == 1:
            script = 'echo $$ > "$0" && exec "$@"'
        else:
            script = 'echo $$ > "$0" && echo $$ > "$1" && shift && exec "$@"'
        return ["sh", "-c", script, *(str(join) for join in self.joins), *command]

    def cores(self) -> float | None:
        """The quota as the kernel holds it; None when unlimited."""
        if self.version == 2:
            limit, interval = (self.path / "cpu.max").read_text().split()
            return None if limit == "max" else int(limit) / int(interval)
        quota = int((self.path / "cpu.cfs_quota_us").read_text())
        period = int((self.path / "cpu.cfs_period_us").read_text())
        return None if quota < 0 else quota / period

    def pids(self) -> list[int]:
        return [int(line) for line in (self.path / "cgroup.procs").read_text().split()]

    def usage_seconds(self) -> float | None:
        """CPU time its processes used, the dead ones' included; None when the kernel keeps
        no account (v1 without cpuacct)."""
        if self.usage_file is None:
            return None
        text = self.usage_file.read_text()
        if self.version == 1:
            return int(text) / 1e9
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                return int(value) / 1e6
        return None


class CpuGroups:
    """The groups of one `up` folder, all under the parent group `name`."""

    def __init__(self, name: str, root: Path = CGROUP_ROOT) -> None:
        self.name = name
        self.root = root

    def make(self, program: str, cores: float) -> CpuGroup:
        """A group for `program` (kept if it exists) held to `cores` CPUs."""
        if not MIN_CORES <= cores <= MAX_CORES:
            raise CpuLimitError(f"{program}: {MIN_CORES} to {MAX_CORES:g} cores, got {cores}")
        hierarchy = _detect(self.root)
        if hierarchy is None:
            raise CpuLimitError(NEEDED.format(root=self.root))
        period, quota = period_and_quota(cores)
        parent = hierarchy.cpu / self.name
        path = parent / program
        try:
            if hierarchy.version == 2:
                _enable_cpu(hierarchy.cpu)
                parent.mkdir(exist_ok=True)
                _enable_cpu(parent)
                path.mkdir(exist_ok=True)
                (path / "cpu.max").write_text(f"{quota} {period}")
                return CpuGroup(path, 2, (path / "cgroup.procs",), path / "cpu.stat")
            path.mkdir(parents=True, exist_ok=True)
            # the period first: the quota is checked against it
            (path / "cpu.cfs_period_us").write_text(str(period))
            (path / "cpu.cfs_quota_us").write_text(str(quota))
            if hierarchy.accounting is None:
                return CpuGroup(path, 1, (path / "cgroup.procs",), None)
            if hierarchy.accounting == hierarchy.cpu:
                return CpuGroup(path, 1, (path / "cgroup.procs",), path / "cpuacct.usage")
            counted = hierarchy.accounting / self.name / program
            counted.mkdir(parents=True, exist_ok=True)
            joins = (path / "cgroup.procs", counted / "cgroup.procs")
            return CpuGroup(path, 1, joins, counted / "cpuacct.usage")
        except OSError as error:
            needed = NEEDED.format(root=self.root)
            raise CpuLimitError(f"cannot make the CPU group {path}: {error}. {needed}") from None

    def groups(self) -> list[Path]:
        """The folders of every group (children first, then the parents) that exist."""
        hierarchy = _detect(self.root)
        if hierarchy is None:
            return []
        trees = [hierarchy.cpu]
        if hierarchy.accounting is not None and hierarchy.accounting != hierarchy.cpu:
            trees.append(hierarchy.accounting)
        found = []
        for tree in trees:
            parent = tree / self.name
            if parent.is_dir():
                found += sorted(child for child in parent.iterdir() if child.is_dir())
                found.append(parent)
        return found

    def remove_all(self, timeout: float = 5.0) -> list[Path]:
        """Remove every group, once the processes in them are gone (a group is kept while a
        process is in it: waited for up to `timeout`). Return the groups left."""
        left = []
        deadline = time.monotonic() + timeout
        for group in self.groups():
            while True:
                try:
                    group.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as error:
                    if error.errno != errno.EBUSY or time.monotonic() > deadline:
                        left.append(group)
                        break
                    time.sleep(0.05)
        return left


def _enable_cpu(group: Path) -> None:
    """Let the children of a v2 group have a CPU quota (`+cpu` in its subtree_control)."""
    control = group / "cgroup.subtree_control"
    enabled = control.read_text().split() if control.exists() else []
    if "cpu" not in enabled:
        control.write_text("+cpu")
