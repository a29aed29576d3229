"""Waiting for the processes of `bazaar up` to be ready: each answers /readyz with 200 on its
own port, and one that keeps crashing is reported at once with the end of its log, instead of
after the whole wait."""

import time

import httpx

from bazaar.runtime.cluster.supervisor import Supervisor
from bazaar.runtime.cluster.topology import Process

START_FAILURES = 3
"""A program that exits this many times before it is ready has a fault that retrying will not
mend (a bad setting, a port taken): the wait stops and shows its last log lines."""


class NotReady(RuntimeError):
    """A process is not ready in time, or keeps exiting before it is."""


def wait_ready(processes: list[Process], timeout: float, supervisor: Supervisor) -> None:
    """Wait until every process answers /readyz with 200 on its own port; fail at once when
    supervisord gave up on one (FATAL) or it keeps exiting."""
    deadline = time.monotonic() + timeout
    pending = list(processes)
    while True:
        pending = [p for p in pending if not _answers_ready(p.port)]
        if not pending:
            return
        _fail_if_crashing(supervisor, [p.name for p in pending])
        if time.monotonic() > deadline:
            names = ", ".join(p.name for p in pending)
            raise NotReady(f"not ready after {timeout:.0f} s: {names}")
        time.sleep(0.2)


def _answers_ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _fail_if_crashing(supervisor: Supervisor, names: list[str]) -> None:
    states = {p.name: p.state for p in supervisor.programs()}
    exits = supervisor.exits()
    for name in names:
        state, exited = states.get(name, "UNKNOWN"), exits.get(name, 0)
        if state == "FATAL" or (state != "RUNNING" and exited >= START_FAILURES):
            raise NotReady(
                f"{name} does not start ({state}, exited {exited} times); the end of its log"
                f" ({supervisor.layout.log_of(name)}):\n{supervisor.last_lines(name)}"
            )


def wait_url(url: str, timeout: float, what: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(url, timeout=1.0)
            if answer.status_code == 200:
                return
            last = f"{answer.status_code} {answer.text[:200]}"
        except httpx.HTTPError as error:
            last = type(error).__name__
        time.sleep(0.2)
    raise NotReady(f"{what or url} not ready after {timeout:.0f} s ({last})")
