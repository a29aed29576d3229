"""`bazaar up --instances catalog=3 --cpu-quota catalog=0.25` and `bazaar scale`: each catalog
instance (granian's workers with it) runs in a CPU group of its own held to a quarter core;
`scale` takes instances out of HAProxy's rotation and stops them (a rolling restart leaves
them out), and brings them back; `down` leaves no group behind. One `up`, one story."""

import subprocess
import time
import uuid
from pathlib import Path

import httpx

from bazaar.runtime.cluster.cpulimit import CpuGroups, CpuLimitError
from bazaar.runtime.cluster.supervisor import descendants
from tests.scaled import _unavailable
from tests.up.running import Running, prepared, start

CATALOG = ["catalog-0", "catalog-1", "catalog-2"]


def _require_cgroups() -> None:
    probe = CpuGroups(f"bazaar-test-probe-{uuid.uuid4().hex[:8]}")
    try:
        probe.make("probe", 1)
    except CpuLimitError as error:
        _unavailable(str(error))
    finally:
        probe.remove_all()


def _cores(group: Path) -> float:
    if (group / "cpu.max").exists():  # cgroup v2
        quota, period = (group / "cpu.max").read_text().split()
        return int(quota) / int(period)
    return int((group / "cpu.cfs_quota_us").read_text()) / int(
        (group / "cpu.cfs_period_us").read_text()
    )


def _members(group: Path) -> set[int]:
    return {int(pid) for pid in (group / "cgroup.procs").read_text().split()}


def _scale(up: Running, count: int) -> subprocess.CompletedProcess:
    began = time.monotonic()
    scaled = up.bazaar("scale", "catalog", str(count))
    print(f"bazaar scale catalog {count} took {time.monotonic() - began:.1f} s")
    return scaled


def _catalog_status(up: Running) -> dict[str, str]:
    return {name: up.haproxy_sees(name) for name in CATALOG}


def _assert_each_instance_in_its_group(up: Running, groups: dict[str, Path]) -> None:
    pids = {p.name: p.pid for p in up.supervisor().programs() if p.name in CATALOG}
    for name, group in groups.items():
        assert pids[name], f"{name} is not running"
        assert {pids[name], *descendants(pids[name])} <= _members(group), name
        assert _cores(group) == 0.25  # the start's boost (control.boosted) is over


def test_instances_held_to_their_quota_scale_down_and_up_and_leave_no_group() -> None:
    _require_cgroups()
    with prepared() as up:
        instances = "identity=1,catalog=3,orders=1,payments=1,notifications=1"
        started = start(up, instances, 0, 1, "--cpu-quota", "catalog=0.25")
        assert started.returncode == 0, started.stdout + started.stderr
        run = up.run()
        assert run.topology.cpu_quota == {"catalog": 0.25}
        groups = {p.name: Path(p.cpu_group) for p in run.processes if p.cpu_group}
        assert sorted(groups) == CATALOG
        assert all(p.cpu_quota == 0.25 for p in run.processes if p.name in CATALOG)
        _assert_each_instance_in_its_group(up, groups)

        scaled = _scale(up, 1)
        assert scaled.returncode == 0, scaled.stdout + scaled.stderr
        status = _catalog_status(up)
        assert status["catalog-0"] == "UP", status
        assert "UP" not in status["catalog-1"] and "UP" not in status["catalog-2"], status
        states = {p.name: p.state for p in up.supervisor().programs()}
        assert [states[name] for name in CATALOG] == ["RUNNING", "STOPPED", "STOPPED"]
        assert not _members(groups["catalog-1"]) and not _members(groups["catalog-2"])
        for _ in range(10):
            assert httpx.get(f"{up.base}/v1/products", timeout=5).status_code == 200
        restarted = up.bazaar("restart", "catalog")  # the instances in service only
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        states = {p.name: p.state for p in up.supervisor().programs()}
        assert [states[name] for name in CATALOG] == ["RUNNING", "STOPPED", "STOPPED"]
        assert _catalog_status(up)["catalog-0"] == "UP"

        scaled = _scale(up, 3)
        assert scaled.returncode == 0, scaled.stdout + scaled.stderr
        assert _catalog_status(up) == dict.fromkeys(CATALOG, "UP")
        _assert_each_instance_in_its_group(up, groups)
        assert httpx.get(f"{up.base}/v1/products", timeout=5).status_code == 200

        refused = _scale(up, 4)
        assert refused.returncode == 1
        assert "started 3" in refused.stderr
        assert _catalog_status(up) == dict.fromkeys(CATALOG, "UP")

        stopped = up.bazaar("down", timeout=180)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        parent = groups["catalog-0"].parent
        assert not parent.exists(), sorted(parent.iterdir())
