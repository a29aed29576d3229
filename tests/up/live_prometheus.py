"""A real Prometheus for the tests of what a person watches (views.py, `bazaar top`): started
on a free port with a data folder of its own, scraping a small exposition server of the test,
its past filled in beforehand (`promtool tsdb create-blocks-from openmetrics`) so that a rate
over a minute is already the rate the series grow at."""

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from bazaar.runtime.cluster.topology import free_port
from tests.scaled import _unavailable

READY_SECONDS = 60


def binaries() -> tuple[str, str]:
    """prometheus and promtool (Debian package `prometheus`): in CI a missing one fails."""
    found = shutil.which("prometheus"), shutil.which("promtool")
    if found[0] is None or found[1] is None:
        _unavailable("prometheus is not installed (Debian package `prometheus`)")
    assert found[0] is not None and found[1] is not None
    return found[0], found[1]


@dataclass(frozen=True)
class Series:
    """A series that grows `per_second` from `start` on (a counter), or stays at `value`."""

    name: str
    labels: dict[str, str]
    value: float = 0.0
    per_second: float = 0.0

    def at(self, start: float, moment: float) -> float:
        return self.value + self.per_second * (moment - start)

    def selector(self, extra: dict[str, str] | None = None) -> str:
        labels = {**(extra or {}), **self.labels}
        inside = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
        return f"{self.name}{{{inside}}}"


def histogram(
    name: str, labels: dict[str, str], per_second: dict[str, float], mean: float
) -> list[Series]:
    """A histogram's series: `per_second` holds each bucket's cumulative rate by `le`, the
    last one `+Inf` (the rate of `_count`)."""
    buckets = [
        Series(f"{name}_bucket", {**labels, "le": le}, per_second=rate)
        for le, rate in per_second.items()
    ]
    count = per_second["+Inf"]
    return [
        *buckets,
        Series(f"{name}_count", labels, per_second=count),
        Series(f"{name}_sum", labels, per_second=count * mean),
    ]


@dataclass(frozen=True)
class Target:
    service: str
    instance: str
    kind: str
    series: list[Series] = field(default_factory=list)
    answers: bool = True
    """False: its /metrics fails (a process down)."""

    @property
    def labels(self) -> dict[str, str]:
        return {
            "job": "bazaar",
            "service": self.service,
            "instance": self.instance,
            "kind": self.kind,
        }


@contextmanager
def exposition(targets: list[Target], start: float) -> Iterator[int]:
    """An HTTP server on a free port serving each target's series at `/<instance>`, as they
    are at the moment asked; a target that does not answer gets a 503."""
    by_path = {f"/{target.instance}": target for target in targets}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            target = by_path.get(self.path)
            if target is None or not target.answers:
                self.send_error(503)
                return
            now = time.time()
            body = "".join(f"{s.selector()} {s.at(start, now)!r}\n" for s in target.series)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *_arguments: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def backfill(data: Path, targets: Iterable[Target], start: float, end: float) -> None:
    """Write each answering target's series, a sample a second from `start` to `end`, into
    Prometheus's data folder as blocks."""
    _, promtool = binaries()
    lines: list[str] = []
    for target in targets:
        if not target.answers:
            continue
        for series in sorted(target.series, key=lambda s: s.selector()):
            selector = series.selector(target.labels)
            moment = start
            while moment <= end:
                lines.append(f"{selector} {series.at(start, moment)!r} {moment:.3f}")
                moment += 1
    data.mkdir(parents=True, exist_ok=True)
    history = data.parent / "history.om"
    history.write_text("\n".join([*lines, "# EOF"]) + "\n")
    done = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(history), str(data)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def scrape_config(port: int, targets: Iterable[Target]) -> dict[str, Any]:
    """One job, `bazaar`, each target labelled as `bazaar up` labels it."""
    return {
        "job_name": "bazaar",
        "scrape_interval": "1s",
        "scrape_timeout": "1s",
        "static_configs": [
            {
                "targets": [f"127.0.0.1:{port}"],
                "labels": {
                    "service": t.service,
                    "instance": t.instance,
                    "kind": t.kind,
                    "__metrics_path__": f"/{t.instance}",
                },
            }
            for t in targets
        ],
    }


@contextmanager
def running_prometheus(
    folder: Path,
    scrape_configs: list[dict[str, Any]] | None = None,
    rule_files: list[Path] | None = None,
) -> Iterator[str]:
    """A Prometheus on a free loopback port over `folder/data` (blocks there are kept),
    evaluating `rule_files` every second; its URL while it runs, stopped afterwards."""
    prometheus, _ = binaries()
    config = folder / "prometheus.yml"
    config.write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(path) for path in rule_files or []],
                "scrape_configs": scrape_configs or [],
            }
        )
    )
    port = free_port()
    log = (folder / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--web.console.templates={folder / 'consoles'}",
            f"--web.console.libraries={folder / 'console_libraries'}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ready(url), f"Prometheus ready ({folder / 'prometheus.log'})")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_for(condition: Callable[[], bool], what: str, seconds: float = READY_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"waited {seconds} s for {what}"
        time.sleep(0.2)


def query(url: str, expr: str) -> dict[str, Any]:
    """Prometheus's whole answer to an instant query (`status`, `data` or `errorType`)."""
    answer: dict[str, Any] = httpx.get(
        f"{url}/api/v1/query", params={"query": expr}, timeout=10
    ).json()
    return answer
