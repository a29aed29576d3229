"""A process's lifetime: a granian worker dies with its parent (`kill -9` of an instance leaves
no orphan on its port), and what the start made is kept out of the garbage collector's scans."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.plugin import FAST_ENV
from tests.replication import free_port


def group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_worker_stops_when_its_parent_is_killed(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, **FAST_ENV, "BAZAAR_DATA_DIR": str(tmp_path / "data")}
    for name in ("BAZAAR_DATABASE_URL", "BAZAAR_REDIS_URL", "BAZAAR_BROKER_URL"):
        env.pop(name, None)
    parent = subprocess.Popen(
        [str(Path(sys.executable).with_name("bazaar")), "dev", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)

        parent.kill()
        parent.wait(timeout=10)
        deadline = time.monotonic() + 15
        while group_alive(parent.pid) and time.monotonic() < deadline:
            time.sleep(0.1)

        assert not group_alive(parent.pid), "the worker outlived its parent"
        with socket.socket() as probe:  # the port is free for a restart, as a server binds it
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", port))
            probe.listen()
    finally:
        if group_alive(parent.pid):
            os.killpg(parent.pid, signal.SIGKILL)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def test_what_the_start_made_is_frozen_out_of_the_collectors_scans(tmp_path: Path) -> None:
    """A full collection of a started process scanned ~160,000 objects (50-80 ms of CPU, a
    stall of several times that under a CPU quota): `bazaar dev` freezes them once started."""
    port = free_port()
    env = {**os.environ, **FAST_ENV, "BAZAAR_DATA_DIR": str(tmp_path / "data")}
    env |= {"BAZAAR_LOG_LEVEL": "info", "BAZAAR_LOG_JSON": "true"}
    for name in ("BAZAAR_DATABASE_URL", "BAZAAR_REDIS_URL", "BAZAAR_BROKER_URL"):
        env.pop(name, None)
    log = tmp_path / "dev.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [str(Path(sys.executable).with_name("bazaar")), "dev", "--port", str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while "startup_objects_frozen" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        line = next(x for x in log.read_text().splitlines() if "startup_objects_frozen" in x)
        assert json.loads(line)["objects"] > 50_000
        # the freeze ends the app's start-up, which granian may finish a moment before it
        # accepts connections
        while not _answers(f"http://127.0.0.1:{port}/readyz"):
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
