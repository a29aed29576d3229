"""A `bazaar up --detach` of the tests' own: its folder, its commands, and what the tests
watch it with (a stream of reads through HAProxy, bounded waits)."""

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from bazaar.runtime.cluster import haproxy
from bazaar.runtime.cluster.folder import Folder
from bazaar.runtime.cluster.pgcluster import ClusterError, binaries
from bazaar.runtime.cluster.record import RunRecord
from bazaar.runtime.cluster.status import running_environment
from bazaar.runtime.cluster.supervisor import Layout, Supervisor
from bazaar.runtime.cluster.topology import free_port
from tests.scaled import BROKER_URL, _rabbitmqctl, _unavailable

BAZAAR = str(Path(sys.executable).parent / "bazaar")
UP_TIMEOUT = 300
T = TypeVar("T")


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
        self,
        *arguments: str,
        environ: dict[str, str] | None = None,
        timeout: float = 120,
        stdin: str | None = None,
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [BAZAAR, *arguments],
            env={**self.environ, **(environ or {})},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def bazaar_bare(
        self, *arguments: str, stdin: str = "", **environ: str
    ) -> subprocess.CompletedProcess:
        """`bazaar` as a person runs it beside the shop: nothing of Bazaar's set by hand but
        the data folder (and `environ`), no server's URL, no `up/env` sourced."""
        bare = {k: v for k, v in os.environ.items() if not k.startswith("BAZAAR_")}
        bare |= {"BAZAAR_DATA_DIR": str(self.data_dir), **environ}
        return subprocess.run(
            [BAZAAR, *arguments], env=bare, input=stdin, capture_output=True, text=True, timeout=120
        )

    def settings(self) -> dict[str, str]:
        """The processes' settings as `up` wrote them."""
        return running_environment(Folder(self.data_dir))

    def run(self) -> RunRecord:
        return RunRecord.load(self.up_folder / "run.json")

    def port_of(self, name: str) -> int:
        return self.run().process(name).port

    def supervisor(self) -> Supervisor:
        return Supervisor(Layout(self.up_folder), timeout=60)

    @property
    def prometheus(self) -> str:
        return f"http://127.0.0.1:{self.run().topology.prometheus_port}"

    def scraped(self) -> dict[str, str]:
        """Each target of its Prometheus by `instance` (the process's name), with its health
        (`up`, `down` or `unknown` before the first scrape)."""
        answer = httpx.get(f"{self.prometheus}/api/v1/targets?state=active", timeout=5)
        targets = answer.json()["data"]["activeTargets"]
        return {t["labels"]["instance"]: t["health"] for t in targets}

    def query(self, expression: str) -> list[dict[str, Any]]:
        """The result of a PromQL query to its Prometheus, now."""
        answer = httpx.get(
            f"{self.prometheus}/api/v1/query", params={"query": expression}, timeout=5
        )
        result: list[dict[str, Any]] = answer.json()["data"]["result"]
        return result

    def haproxy_sees(self, server: str) -> str:
        views = haproxy.server_views(self.up_folder / "haproxy.sock")
        return next(view.status for view in views if view.server == server)


def require_packages() -> None:
    needed = ("haproxy", "supervisord", "redis-server", "prometheus")
    missing = [b for b in needed if not shutil.which(b)]
    try:
        binaries()
    except ClusterError:
        missing.append("postgresql")
    if missing:
        _unavailable(f"`bazaar up` needs {', '.join(missing)} (see the README)")


@contextmanager
def prepared(extra: dict[str, str] | None = None) -> Iterator[Running]:
    """A data folder and a RabbitMQ virtual host of their own, removed afterwards (with a
    `bazaar down` first, whatever ran there)."""
    require_packages()
    vhost = f"bazaar-test-up-{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    data_dir = Path(tempfile.mkdtemp(prefix="bazaar-test-up-"))
    data_dir.chmod(0o755)  # PostgreSQL runs as `postgres` under it
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BAZAAR_")},
        "BAZAAR_DATA_DIR": str(data_dir),
        "BAZAAR_BROKER_URL": BROKER_URL.rstrip("/") + "/" + vhost,
        "BAZAAR_LOG_LEVEL": "warning",
        **(extra or {}),
    }
    up = Running(data_dir, environ, f"http://127.0.0.1:{free_port()}")
    try:
        yield up
    finally:
        up.bazaar("down", timeout=180)
        _rabbitmqctl("delete_vhost", vhost)
        shutil.rmtree(data_dir, ignore_errors=True)


def start(
    up: Running, instances: str, replicas: int, shards: int, *options: str
) -> subprocess.CompletedProcess:
    """`bazaar up --detach` on the prepared folder, timed (figure in the report)."""
    began = time.monotonic()
    started = up.bazaar(
        *_up_arguments(up, instances, replicas, shards, *options), timeout=UP_TIMEOUT
    )
    print(f"bazaar up took {time.monotonic() - began:.1f} s")
    return started


def start_watched(
    up: Running, instances: str, replicas: int, shards: int
) -> tuple[int, list[tuple[float, str]]]:
    """`bazaar up --detach` as `start` runs it, its output read line by line as it comes:
    the exit status and each line with the `time.monotonic()` it arrived at."""
    command = [BAZAAR, *_up_arguments(up, instances, replicas, shards)]
    lines: list[tuple[float, str]] = []
    with subprocess.Popen(
        command, env={**up.environ, "COLUMNS": "200"}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    ) as process:  # fmt: skip
        assert process.stdout is not None
        for line in process.stdout:
            lines.append((time.monotonic(), line.rstrip("\n")))
        returncode = process.wait(timeout=UP_TIMEOUT)
    lines.append((time.monotonic(), ""))  # when it ended
    return returncode, lines


def _up_arguments(
    up: Running, instances: str, replicas: int, shards: int, *options: str
) -> list[str]:
    """The arguments of a tests' `bazaar up --detach` on `up`'s port."""
    port = up.base.rsplit(":", 1)[1]
    return [
        "up", "--detach", "--replicas", str(replicas), "--shards", str(shards),
        "--instances", instances, "--port", port, "--stats-port", str(free_port()), *options,
    ]  # fmt: skip


def wait_for(condition: Callable[[], T], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout} s")


def status_of(url: str) -> int:
    """The status of a GET, 0 when nothing answered."""
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0


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
