"""`bazaar up --autoscale catalog=1..3`: a short ramp through HAProxy (wrk, then a trickle)
scales catalog up, then back down to its minimum once the load is gone, with every request
answered; `bazaar status` shows the decisions; `bazaar scale` refuses the autoscaled service.
Windows shortened through the settings."""

import json
import re
import shutil
import subprocess
import threading
from pathlib import Path

import httpx

from bazaar.runtime.cluster.autoscale import Report, equivalent_in_flight, in_flight
from bazaar.runtime.cluster.hpa import ONE_MACHINE, Autoscaler, Bounds
from bazaar.runtime.cluster.record import RunAutoscale
from bazaar.runtime.cluster.topology import TopologyError, parse_autoscale, parse_instances
from tests.scaled import _unavailable
from tests.up.running import Running, prepared, start, wait_for

CATALOG = ["catalog-0", "catalog-1", "catalog-2"]
LISTING = "/v1/products?limit=5"
SHORT = {"BAZAAR_AUTOSCALE_PERIOD": "1", "BAZAAR_AUTOSCALE_DOWN_WINDOW": "8"}


class Trickle:
    """One client reading the listing, one request at a time, until stopped: every status."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)

    def _read(self) -> None:
        with httpx.Client(base_url=self.base, timeout=10) as client:
            while not self._stop.wait(0.02):
                try:
                    self.statuses.append(client.get(LISTING).status_code)
                except httpx.HTTPError as error:
                    self.statuses.append(-1)
                    print("read failed:", error)

    def __enter__(self) -> "Trickle":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)


def _wrk(base: str, connections: int, seconds: int) -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        _unavailable("wrk is not installed (Debian package `wrk`)")
    command = [str(wrk), "-t1", f"-c{connections}", f"-d{seconds}s", base + LISTING]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30)
    assert done.returncode == 0, done.stderr
    print(done.stdout)
    return done.stdout


def _report(up: Running) -> Report:
    import msgspec

    return msgspec.json.decode((up.up_folder / "autoscale.json").read_bytes(), type=Report)


def _states(up: Running) -> list[str]:
    states = {p.name: p.state for p in up.supervisor().programs()}
    return [states[name] for name in CATALOG]


def test_a_ramp_scales_catalog_up_and_back_down_without_a_failed_request() -> None:
    with prepared(SHORT) as up:
        instances = "identity=1,orders=1,payments=1,notifications=1"
        options = ("--autoscale", "catalog=1..3", "--autoscale-target", "catalog=2")
        started = start(up, instances, 0, 1, *options)
        assert started.returncode == 0, started.stdout + started.stderr
        assert _states(up) == ["RUNNING", "STOPPED", "STOPPED"]
        assert [up.haproxy_sees(name) for name in CATALOG] == ["UP", "MAINT", "MAINT"]
        assert up.run().topology.autoscale == RunAutoscale(
            ranges={"catalog": (1, 3)},
            targets={"catalog": 2.0},
            period=1.0,
            up_window=0.0,
            down_window=8.0,
        )
        with Trickle(up.base) as trickle:
            wait_for(lambda: (up.up_folder / "autoscale.json").exists(), 10, "a first decision")
            load = _wrk(up.base, connections=12, seconds=15)
            peak = max(e.after for e in _report(up).events if e.service == "catalog")
            wait_for(lambda: _report(up).services["catalog"].in_service == 1, 60, "back to 1")
        assert not re.search(r"Non-2xx|Socket errors", load), load
        assert trickle.statuses and set(trickle.statuses) == {200}, set(trickle.statuses)
        events = [e for e in _report(up).events if e.service == "catalog"]
        print("\n".join(f"{e.at:.1f} {e.before} -> {e.after}: {e.reason}" for e in events))
        assert peak >= 2, events
        assert any(e.after > e.before for e in events), events
        assert any(e.after < e.before for e in events), events
        assert not any("failed" in e.reason for e in events), events
        assert _states(up) == ["RUNNING", "STOPPED", "STOPPED"]

        shown = up.bazaar("status")
        assert "Autoscaler (every 1 s" in shown.stdout, shown.stdout
        assert re.search(r"catalog\s+1 -> [23]", shown.stdout), shown.stdout
        as_json = json.loads(up.bazaar("status", "--json").stdout)
        assert as_json["autoscale"]["services"]["catalog"]["in_service"] == 1

        refused = up.bazaar("scale", "catalog", "3")
        assert refused.returncode == 2, refused.stdout + refused.stderr
        said = " ".join((refused.stdout + refused.stderr).split())
        assert "catalog is autoscaled within 1..3" in said, said
        assert "bazaar up` with another range in --autoscale" in said, said
        assert _states(up) == ["RUNNING", "STOPPED", "STOPPED"]
        by_hand = up.bazaar("scale", "orders", "1")  # not autoscaled: scaled as asked
        assert by_hand.returncode == 0, by_hand.stdout + by_hand.stderr
        stopped = up.bazaar("down", timeout=180)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert not (Path(up.up_folder) / "run.json").exists()


def test_in_flight_per_instance_counts_the_servers_up_and_the_queue() -> None:
    header = "# pxname,svname,qcur,scur,status\n"
    rows = [
        "catalog,catalog-0,0,3,UP",
        "catalog,catalog-1,1,2,UP",
        "catalog,catalog-2,0,0,MAINT",
        "catalog,BACKEND,2,5,UP",
        "orders,orders-0,0,0,DOWN",
        "orders,BACKEND,0,0,DOWN",
        "api,FRONTEND,,9,OPEN",
    ]
    assert in_flight(header + "\n".join(rows)) == {"catalog": 4.0, "orders": None}


def test_autoscale_ranges_are_parsed_with_a_clear_error() -> None:
    parsed = parse_autoscale("catalog=1..8, orders=2..4", "orders=3", 2, 0, 60)
    assert parsed.ranges == {"catalog": (1, 8), "orders": (2, 4)}
    assert parsed.targets == {"catalog": 4.0, "orders": 3.0}
    for wrong in ("catalog=3..2", "catalog=0..2", "catalog=1-3", "shop=1..2", "catalog=1..33"):
        try:
            parse_autoscale(wrong, None, 2, 0, 60)
        except TopologyError as error:
            assert "SERVICE=MIN..MAX" in str(error) and wrong in str(error)
        else:
            raise AssertionError(f"{wrong} was taken")
    for targets in ("identity=2", "catalog=0", "catalog=x"):
        try:
            parse_autoscale("catalog=1..2", targets, 2, 0, 60)
        except TopologyError as error:
            assert "--autoscale-target" in str(error)
        else:
            raise AssertionError(f"{targets} was taken")


def test_below_the_target_the_signal_follows_how_busy_the_instances_are() -> None:
    assert equivalent_in_flight(4.0, 4.0) == 4.0
    assert equivalent_in_flight(24.0, 4.0) == 24.0  # over the target: as it is, up fast
    quiet = equivalent_in_flight(0.54, 4.0)  # six instances a third busy (the ramp's case)
    assert 1.7 < quiet < 1.8
    hpa = Autoscaler(Bounds(1, 6), 4.0, ONE_MACHINE)
    assert hpa.recommend(6, quiet)[0] == 3  # not 1, which the raw 0.54 asks for
    assert hpa.recommend(6, 0.54)[0] == 1
    values = [equivalent_in_flight(x / 10, 4.0) for x in range(0, 80)]
    assert values == sorted(values) and values[0] == 0.0


def test_workers_are_named_in_autoscale_and_cpu_quota_and_get_a_program_each() -> None:
    from bazaar.runtime.cluster.topology import PortSource, Topology, parse_cpu_quota

    scaling = parse_autoscale("catalog=1..2,notifications-worker=1..3", None, 2, 0, 60)
    assert scaling.targets == {"catalog": 4.0, "notifications-worker": 100.0}
    quota = parse_cpu_quota("notifications-worker=0.1,catalog=0.25")
    topology = Topology(parse_instances(None, scaling), cpu_quota=quota, autoscale=scaling)
    processes = topology.processes(PortSource())
    workers = [p for p in processes if p.service == "notifications" and p.kind == "worker"]
    assert [p.name for p in workers] == [
        "notifications-worker",
        "notifications-worker-1",
        "notifications-worker-2",
    ]
    assert len({p.port for p in processes}) == len(processes)
    assert [p.name for p in processes if p.service == "orders"] == [
        "orders-0",
        "orders-1",
        "orders-worker",
    ]
    assert topology.held_back(processes) == {
        "catalog-1",
        "notifications-worker-1",
        "notifications-worker-2",
    }
    assert [topology.quota_of(p) for p in workers] == [0.1, 0.1, 0.1]
    catalog = next(p for p in processes if p.name == "catalog-0")
    assert (topology.quota_of(catalog), topology.quota_of(processes[0])) == (0.25, None)
    for wrong in ("notifications-workers=1..2", "worker=1..2"):
        try:
            parse_autoscale(wrong, None, 2, 0, 60)
        except TopologyError as error:
            assert "SERVICE-worker=MIN..MAX" in str(error), error
        else:
            raise AssertionError(f"{wrong} was taken")
