"""CPU quota groups on a stand-in for /sys/fs/cgroup (a folder laid out as cgroup v1 or v2):
the files written, the wrapper command, `--cpu-quota`'s parsing; and one real group holding a
busy loop to its quota, beside a busy loop without one."""

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from bazaar.runtime.cluster.cpulimit import (
    CpuGroups,
    CpuLimitError,
    period_and_quota,
    root_name,
)
from bazaar.runtime.cluster.topology import Topology, TopologyError, parse_cpu_quota
from tests.scaled import _unavailable

BUSY = [sys.executable, "-c", "while True: pass"]


def _v2(root: Path) -> Path:
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "cgroup.subtree_control").write_text("memory\n")
    return root


def _v1(root: Path, cpuacct: str) -> Path:
    """`cpuacct`: `apart` (its own tree), `together` (in cpu's tree) or `none`."""
    (root / "cpu").mkdir()
    (root / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    if cpuacct == "together":
        (root / "cpu" / "cpuacct.usage").write_text("0\n")
    elif cpuacct == "apart":
        (root / "cpuacct").mkdir()
        (root / "cpuacct" / "cpuacct.usage").write_text("0\n")
    return root


def test_cpu_quota_names_services_and_cores_within_bounds() -> None:
    assert parse_cpu_quota("catalog=0.25, orders=0.5") == {"catalog": 0.25, "orders": 0.5}
    assert parse_cpu_quota(None) == {}
    assert Topology().cpu_quota == {}
    for wrong in ("shop=1", "catalog", "catalog=x", "catalog=0", "catalog=0.001", "catalog=65"):
        with pytest.raises(TopologyError, match="--cpu-quota"):
            parse_cpu_quota(wrong)


def test_the_period_is_10_ms_and_grows_only_to_keep_a_1_ms_quota() -> None:
    assert period_and_quota(0.25) == (10_000, 2_500)
    assert period_and_quota(2) == (10_000, 20_000)
    assert period_and_quota(0.05) == (20_000, 1_000)
    assert period_and_quota(0.01) == (100_000, 1_000)


def test_v2_enables_cpu_down_to_the_parent_and_writes_cpu_max(tmp_path: Path) -> None:
    root = _v2(tmp_path)
    group = CpuGroups("bazaar-test", root).make("catalog-0", 0.25)
    assert group.path == root / "bazaar-test" / "catalog-0"
    assert (group.path / "cpu.max").read_text() == "2500 10000"
    assert group.cores() == 0.25
    assert (root / "cgroup.subtree_control").read_text() == "+cpu"
    assert (root / "bazaar-test" / "cgroup.subtree_control").read_text() == "+cpu"
    (group.path / "cpu.stat").write_text("usage_usec 1500000\nuser_usec 1000000\n")
    assert group.usage_seconds() == 1.5
    assert group.joins == (group.path / "cgroup.procs",)


def test_v1_writes_period_and_quota_and_joins_cpuacct_when_apart(tmp_path: Path) -> None:
    root = _v1(tmp_path, cpuacct="apart")
    group = CpuGroups("bazaar-test", root).make("orders-1", 0.5)
    assert group.path == root / "cpu" / "bazaar-test" / "orders-1"
    assert (group.path / "cpu.cfs_period_us").read_text() == "10000"
    assert (group.path / "cpu.cfs_quota_us").read_text() == "5000"
    assert group.cores() == 0.5
    counted = root / "cpuacct" / "bazaar-test" / "orders-1"
    assert group.joins == (group.path / "cgroup.procs", counted / "cgroup.procs")
    (counted / "cpuacct.usage").write_text("2500000000\n")
    assert group.usage_seconds() == 2.5


def test_v1_with_cpuacct_together_or_absent(tmp_path: Path) -> None:
    (tmp_path / "together").mkdir()
    (tmp_path / "none").mkdir()
    together = CpuGroups("b", _v1(tmp_path / "together", "together")).make("catalog-0", 1)
    assert together.joins == (together.path / "cgroup.procs",)
    assert together.usage_file == together.path / "cpuacct.usage"
    alone = CpuGroups("b", _v1(tmp_path / "none", "none")).make("catalog-0", 1)
    assert alone.usage_seconds() is None


def test_the_wrapper_writes_its_pid_to_every_join_and_execs_under_it(tmp_path: Path) -> None:
    group = CpuGroups("bazaar-test", _v1(tmp_path, cpuacct="apart")).make("catalog-0", 1)
    command = group.wrap(["sh", "-c", 'echo "$$ $1"', "name", "a b"])
    assert command[:3] == ["sh", "-c", 'echo $$ > "$0" && echo $$ > "$1" && shift && exec "$@"']
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    pid, argument = done.stdout.split(" ", 1)
    assert argument == "a b\n"
    assert [join.read_text() for join in group.joins] == [f"{pid}\n", f"{pid}\n"]
    assert group.pids() == [int(pid)]


def test_a_wrapper_that_cannot_join_does_not_run_the_command(tmp_path: Path) -> None:
    group = CpuGroups("bazaar-test", _v2(tmp_path)).make("catalog-0", 1)
    (group.path / "cgroup.procs").mkdir()  # unwritable as a file
    done = subprocess.run(group.wrap(["echo", "ran"]), capture_output=True, text=True)
    assert done.returncode != 0 and "ran" not in done.stdout


def test_no_cgroup_cpu_controller_says_what_is_needed(tmp_path: Path) -> None:
    with pytest.raises(CpuLimitError, match="writable cgroup cpu controller"):
        CpuGroups("bazaar-test", tmp_path).make("catalog-0", 0.5)
    assert CpuGroups("bazaar-test", tmp_path).remove_all() == []


def test_groups_are_listed_children_first_and_removing_gone_ones_is_quiet(tmp_path: Path) -> None:
    root = _v1(tmp_path, cpuacct="apart")
    groups = CpuGroups("bazaar-test", root)
    groups.make("catalog-0", 1)
    groups.make("catalog-1", 1)
    cpu, acct = root / "cpu" / "bazaar-test", root / "cpuacct" / "bazaar-test"
    assert groups.groups() == [
        cpu / "catalog-0",
        cpu / "catalog-1",
        cpu,
        acct / "catalog-0",
        acct / "catalog-1",
        acct,
    ]
    assert CpuGroups("bazaar-other", root).remove_all() == []


def test_each_data_dir_has_a_parent_group_of_its_own() -> None:
    assert root_name(Path("/a/.bazaar")) == root_name(Path("/a/.bazaar"))
    assert root_name(Path("/a/.bazaar")) != root_name(Path("/b/.bazaar"))
    assert root_name(Path("/a/.bazaar")).startswith("bazaar-")


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_real_group_holds_a_busy_loop_to_its_quota() -> None:
    groups = CpuGroups(f"bazaar-test-{uuid.uuid4().hex[:8]}")
    try:
        group = groups.make("busy", 0.2)
    except CpuLimitError as error:
        _unavailable(str(error))
    held = subprocess.Popen(group.wrap(BUSY))
    free = subprocess.Popen(BUSY)
    try:
        time.sleep(0.5)  # the interpreter started, the loop runs
        assert group.pids() == [held.pid]
        before = (_cpu_seconds(held.pid), _cpu_seconds(free.pid), group.usage_seconds() or 0)
        began = time.monotonic()
        time.sleep(2)
        after = (_cpu_seconds(held.pid), _cpu_seconds(free.pid), group.usage_seconds() or 0)
        elapsed = time.monotonic() - began
    finally:
        for process in (held, free):
            process.kill()
            process.wait()
    held_cores = (after[0] - before[0]) / elapsed
    free_cores = (after[1] - before[1]) / elapsed
    counted_cores = (after[2] - before[2]) / elapsed
    print(f"held to 0.2: {held_cores:.3f} cores ({counted_cores:.3f} by its group's account);")
    print(f"without a group: {free_cores:.3f} cores")
    assert 0.1 < held_cores <= 0.25
    assert free_cores > 0.6  # about a core (2 cores, shared with other tests)
    if group.usage_file is not None:
        assert 0.1 < counted_cores <= 0.25
    parent = group.path.parent
    assert groups.remove_all() == []
    assert not parent.exists() and groups.groups() == []


def test_a_starting_process_is_boosted_until_ready_then_held_to_its_quota(
    tmp_path: Path,
) -> None:
    from bazaar.runtime.cluster.control import STARTUP_CORES, boosted
    from bazaar.runtime.cluster.record import RunProcess

    groups = CpuGroups("b", _v2(tmp_path))
    small = groups.make("catalog-1", 0.1)
    large = groups.make("orders-0", 0.75)
    starting = [
        RunProcess("catalog-1", "catalog", "serve", 1, cpu_quota=0.1),
        RunProcess("orders-0", "orders", "serve", 2, cpu_quota=0.75),  # more already
        RunProcess("payments-0", "payments", "serve", 3),  # no quota: no group
    ]
    with boosted(groups, starting):
        assert small.cores() == STARTUP_CORES
        assert large.cores() == 0.75
    assert small.cores() == 0.1 and large.cores() == 0.75
    with pytest.raises(TimeoutError), boosted(groups, starting):  # not ready: held again
        raise TimeoutError
    assert small.cores() == 0.1
    assert not (tmp_path / "b" / "payments-0").exists()
