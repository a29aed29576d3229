"""`bazaar up` in the foreground, with a RabbitMQ node of its own (no `BAZAAR_BROKER_URL`):
it serves through HAProxy until Ctrl-C, then stops everything it started."""

import os
import signal
import subprocess
from pathlib import Path

import httpx

from bazaar.runtime.cluster.supervisor import is_alive
from bazaar.runtime.cluster.topology import free_port
from tests.up.running import BAZAAR, UP_TIMEOUT, Running, prepared, status_of, wait_for

INSTANCES = "identity=1,catalog=1,orders=1,payments=1,notifications=1"


def recorded_pids(up: Running) -> list[int]:
    try:
        return up.run().pids
    except (OSError, ValueError):  # not written yet, or being written
        return []


def processes_under(folder: Path) -> list[int]:
    """Processes whose command line names `folder` (servers, supervisord, instances)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(folder).encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_up_in_the_foreground_serves_until_ctrl_c_then_leaves_nothing() -> None:
    with prepared({"BAZAAR_BROKER_URL": ""}) as up:
        port = up.base.rsplit(":", 1)[1]
        command = [
            BAZAAR, "up", "--replicas", "0", "--shards", "1", "--port", port,
            "--stats-port", str(free_port()),
            "--instances", INSTANCES,
        ]  # fmt: skip
        log = (up.data_dir / "up-foreground.log").open("wb")
        process = subprocess.Popen(
            command, env=up.environ, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            try:
                wait_for(
                    lambda: process.poll() is not None or status_of(f"{up.base}/readyz") == 200,
                    UP_TIMEOUT,
                    "up serving",
                )
                assert process.poll() is None, "up exited"
            except AssertionError as error:  # with what up printed
                tail = (up.data_dir / "up-foreground.log").read_text()[-3000:]
                raise AssertionError(f"{error}; up said:\n{tail}") from None
            account = {"email": "fg@example.com", "password": "foreground1", "name": "Fg"}
            assert httpx.post(f"{up.base}/v1/auth/register", json=account).status_code == 201
            login = {k: account[k] for k in ("email", "password")}
            tokens = httpx.post(f"{up.base}/v1/auth/login", json=login).json()
            me = httpx.get(
                f"{up.base}/v1/users/me",
                headers={"Authorization": f"Bearer {tokens['access_token']}"},
            )
            assert me.status_code == 200, me.text
            # `up` writes down what it started once everything is up, HAProxy last
            started = wait_for(lambda: recorded_pids(up), 60, "the recorded pids")
            printed = up.data_dir / "up-foreground.log"
            # until `up` has handed Ctrl-C over to its wait (a Ctrl-C before is a start cut off)
            wait_for(lambda: "Ctrl-C stops everything" in printed.read_text(), 30, "up waiting")

            os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends
            process.wait(timeout=180)
            assert process.returncode == 0
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            log.close()

        left = [pid for pid in started if is_alive(pid)]
        assert left == [], f"still running: {left}"
        assert status_of(f"{up.base}/healthz") == 0  # HAProxy is gone too


def test_ctrl_c_while_up_is_starting_stops_what_it_started() -> None:
    with prepared({"BAZAAR_BROKER_URL": ""}) as up:
        command = [
            BAZAAR, "up", "--replicas", "0", "--shards", "1", "--instances", INSTANCES,
            "--port", up.base.rsplit(":", 1)[1], "--stats-port", str(free_port()),
        ]  # fmt: skip
        output = up.data_dir / "up-interrupted.log"
        with output.open("wb") as log:
            process = subprocess.Popen(
                command, env=up.environ, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
            try:
                wait_for(lambda: b"RabbitMQ: node" in output.read_bytes(), 120, "the servers")
                os.killpg(process.pid, signal.SIGINT)
                process.wait(timeout=120)
            finally:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)

        assert process.returncode == 130, output.read_text()
        assert "Interrupted" in output.read_text()
        assert processes_under(up.data_dir) == []
