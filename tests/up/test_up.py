"""`bazaar up --detach` for real, small (2 instances per service, 1 replica, 2 shards), on free
ports in a data folder of its own and a RabbitMQ virtual host of its own; every request goes
through HAProxy. Ends with `bazaar down`, checked by the pids `up` recorded.

Needs the Debian packages of the README (haproxy, supervisor, postgresql, redis-server) and
RabbitMQ: in CI a missing one fails the run, elsewhere the module is skipped, loudly.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from bazaar.runtime import haproxy
from bazaar.runtime.pgcluster import ClusterError, binaries
from bazaar.runtime.status import running_environment
from bazaar.runtime.supervisor import Layout, Supervisor, descendants, is_alive
from bazaar.runtime.topology import free_port
from bazaar.runtime.up import Folder
from tests.scaled import BROKER_URL, _rabbitmqctl, _unavailable

BAZAAR = str(Path(sys.executable).parent / "bazaar")
UP_TIMEOUT = 300
STREAM_SECONDS = 6.0


@dataclass
class Running:
    data_dir: Path
    environ: dict[str, str]
    base: str
    recorded: list[int] = field(default_factory=list)

    @property
    def up_folder(self) -> Path:
        return self.data_dir / "up"

    def bazaar(
        self, *arguments: str, environ: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [BAZAAR, *arguments],
            env={**self.environ, **(environ or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def run(self) -> dict:
        return json.loads((self.up_folder / "run.json").read_text())

    def supervisor(self) -> Supervisor:
        return Supervisor(Layout(self.up_folder), timeout=10)


def _require_packages() -> None:
    missing = [b for b in ("haproxy", "supervisord", "redis-server") if not shutil.which(b)]
    try:
        binaries()
    except ClusterError:
        missing.append("postgresql")
    if missing:
        _unavailable(f"`bazaar up` needs {', '.join(missing)} (see the README)")


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    _require_packages()
    vhost = f"bazaar-test-up-{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    data_dir = Path(tempfile.mkdtemp(prefix="bazaar-test-up-"))
    data_dir.chmod(0o755)  # PostgreSQL runs as `postgres` under it
    port = free_port()
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BAZAAR_")},
        "BAZAAR_DATA_DIR": str(data_dir),
        "BAZAAR_BROKER_URL": BROKER_URL.rstrip("/") + "/" + vhost,
        "BAZAAR_LOG_LEVEL": "warning",
    }
    up = Running(data_dir, environ, f"http://127.0.0.1:{port}")
    try:
        started = up.bazaar(
            "up", "--detach", "--replicas", "1", "--shards", "2",
            "--instances", "identity=2,catalog=2,orders=2,payments=2,notifications=2",
            "--port", str(port), "--stats-port", str(free_port()),
            timeout=UP_TIMEOUT,
        )  # fmt: skip
        assert started.returncode == 0, started.stdout + started.stderr
        up.recorded = up.run()["pids"]
        yield up
    finally:
        up.bazaar("down", timeout=180)
        _rabbitmqctl("delete_vhost", vhost)
        shutil.rmtree(data_dir, ignore_errors=True)


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout} s")


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0


def _listed_ids(up: Running) -> list[str]:
    items = httpx.get(f"{up.base}/v1/products", timeout=5).json()["items"]
    assert items
    return [item["id"] for item in items]


def _haproxy_sees(up: Running, server: str) -> str:
    views = haproxy.server_views(up.up_folder / "haproxy.sock")
    return next(view.status for view in views if view.server == server)


def _product_ids(up: Running) -> list[str]:
    """Seeded into the running topology's catalog (with the settings `up` wrote down)."""
    settings = running_environment(Folder(up.data_dir))
    seeded = up.bazaar("seed", "--products", "5", environ=settings, timeout=120)
    assert seeded.returncode == 0, seeded.stderr

    def listed() -> list[str]:
        items = httpx.get(f"{up.base}/v1/products?limit=5", timeout=5).json()["items"]
        return [item["id"] for item in items] if len(items) == 5 else []

    return _wait(listed, 10, "the seeded products listed")


class ReadStream:
    """Product reads through HAProxy, one after another, until stopped; every answer kept."""

    def __init__(self, base: str, ids: list[str]) -> None:
        self.base, self.ids = base, ids
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)

    def _read(self) -> None:
        with httpx.Client(base_url=self.base, timeout=5) as client:
            while not self._stop.is_set():
                product = self.ids[len(self.statuses) % len(self.ids)]
                try:
                    self.statuses.append(client.get(f"/v1/products/{product}").status_code)
                except httpx.HTTPError as error:
                    self.statuses.append(-1)
                    print("read failed:", error)

    def __enter__(self) -> "ReadStream":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def test_the_api_answers_through_haproxy(running: Running) -> None:
    assert _wait(lambda: _status(f"{running.base}/readyz") == 200, 60, "ready through HAProxy")
    assert _status(f"{running.base}/healthz") == 200
    email = f"up-{uuid.uuid4().hex[:8]}@example.com"
    registered = httpx.post(
        f"{running.base}/v1/auth/register",
        json={"email": email, "password": "correct horse", "name": "Up"},
        timeout=5,
    )
    assert registered.status_code == 201, registered.text
    login = httpx.post(
        f"{running.base}/v1/auth/login",
        json={"email": email, "password": "correct horse"},
        timeout=5,
    )
    assert login.status_code == 200
    token = login.json()["access_token"]
    me = httpx.get(
        f"{running.base}/v1/users/me", headers={"authorization": f"Bearer {token}"}, timeout=5
    )
    assert me.json()["email"] == email
    ids = _product_ids(running)
    assert httpx.get(f"{running.base}/v1/products/{ids[0]}", timeout=5).status_code == 200
    nowhere = httpx.get(f"{running.base}/v1/nowhere", timeout=5)
    assert nowhere.status_code == 404
    assert nowhere.headers["content-type"] == "application/problem+json"


def test_a_killed_catalog_instance_fails_no_read_and_comes_back(running: Running) -> None:
    ids = [
        item["id"] for item in httpx.get(f"{running.base}/v1/products", timeout=5).json()["items"]
    ]
    supervisor = running.supervisor()
    victim = next(p for p in supervisor.programs() if p.name == "catalog-0")
    port = next(p["port"] for p in running.run()["processes"] if p["name"] == "catalog-0")
    with ReadStream(running.base, ids) as stream:
        time.sleep(1.0)
        os.killpg(victim.pid, signal.SIGKILL)  # the instance: granian and its worker
        time.sleep(STREAM_SECONDS)
    assert len(stream.statuses) > 50
    assert set(stream.statuses) == {200}, [s for s in stream.statuses if s != 200]

    def back() -> bool:
        now = next(p for p in supervisor.programs() if p.name == "catalog-0")
        return now.pid != victim.pid and now.state == "RUNNING"

    _wait(back, 30, "catalog-0 restarted by supervisord")
    _wait(lambda: _status(f"http://127.0.0.1:{port}/readyz") == 200, 30, "catalog-0 ready")
    _wait(lambda: _haproxy_sees(running, "catalog-0") == "UP", 10, "HAProxy sees catalog-0 UP")
    status = json.loads(running.bazaar("status", "--json").stdout)
    assert next(p for p in status["programs"] if p["name"] == "catalog-0")["restarts"] >= 1


def test_a_rolling_restart_of_catalog_fails_no_read(running: Running) -> None:
    ids = [
        item["id"] for item in httpx.get(f"{running.base}/v1/products", timeout=5).json()["items"]
    ]
    before = {p.name: p.pid for p in running.supervisor().programs()}
    with ReadStream(running.base, ids) as stream:
        restarted = running.bazaar("restart", "catalog", timeout=240)
    assert restarted.returncode == 0, restarted.stderr
    assert set(stream.statuses) == {200}, [s for s in stream.statuses if s != 200]
    after = {p.name: p.pid for p in running.supervisor().programs()}
    for name in ("catalog-0", "catalog-1", "catalog-worker"):
        assert after[name] != before[name]
    assert after["orders-0"] == before["orders-0"]


def test_status_reports_every_part(running: Running) -> None:
    report = json.loads(running.bazaar("status", "--json").stdout)
    names = {p["name"] for p in report["programs"]}
    assert {"haproxy", "redis", "mailsink", "orders-1", "notifications-worker"} <= names
    assert all(p["state"] == "RUNNING" for p in report["programs"])
    assert all(p["ready"] for p in report["programs"] if p["port"])
    assert len(report["backends"]) == 10
    assert [r["state"] for r in report["replicas"]] == ["streaming"]
    assert {q["consumer"] for q in report["queues"]} >= {"orders"}
    assert report["emails"] >= 0
    assert report["budget"]["total"] <= report["budget"]["max_connections"]


def test_down_leaves_no_process_behind(running: Running) -> None:
    supervisord = running.supervisor().pid()
    recorded = [*running.recorded, supervisord, *descendants(supervisord)]
    assert len(recorded) > 30
    stopped = running.bazaar("down", timeout=180)
    assert stopped.returncode == 0, stopped.stderr
    assert [pid for pid in recorded if is_alive(pid)] == []
    assert _status(f"{running.base}/healthz") == 0
    assert not (running.up_folder / "run.json").exists()
