"""`bazaar restart SERVICE`, `bazaar scale SERVICE COUNT` and `bazaar logs SERVICE` on a
running `bazaar up`.

A rolling restart takes one instance at a time out of HAProxy's rotation (`drain`: no new
request, those in flight finish), waits until it holds no request, stops it (SIGTERM: it
drains itself too), starts it, waits for its /readyz, puts it back and waits until HAProxy
sees it UP, and only then goes on to the next. The service's workers go last. An instance
or worker that `scale` or the autoscaler took out stays out.

`scale` keeps the first COUNT of the instances `up` started in service and the others stopped:
an instance taken out is drained, stopped (it uses no CPU) and put in maintenance in HAProxy;
one brought back is started, waited for and put back in rotation. Prometheus's target file
then lists the instances running, so that a stopped one is not scraped (nor alerted on).
The autoscaler (`up --autoscale`) sets the workers of a service the same way
(`set_workers`); `scale` refuses a service the autoscaler owns (`refuse_autoscaled`).

A process under a CPU quota (`up --cpu-quota`) that `scale`, `restart` or the autoscaler starts
is given STARTUP_CORES until it is ready, then held to its quota again (`boosted`).
"""

import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from bazaar.runtime.cluster import haproxy, prometheus
from bazaar.runtime.cluster.cpulimit import CpuGroups
from bazaar.runtime.cluster.folder import Folder
from bazaar.runtime.cluster.readiness import NotReady, wait_url
from bazaar.runtime.cluster.record import RunProcess, RunRecord
from bazaar.runtime.cluster.supervisor import STOP_WAIT_SECONDS, Supervisor
from bazaar.runtime.cluster.up import READY_TIMEOUT, Say, UpError
from bazaar.runtime.services import SERVICES

DRAIN_TIMEOUT = 30.0
STOP_TIMEOUT = STOP_WAIT_SECONDS + 10.0
DOWN_STATES = ("STOPPED", "EXITED", "FATAL")
STARTUP_CORES = 0.5
"""What a starting process may use until it is ready, when its quota is less (Kubernetes' in
place resize, as startup CPU boosts use it). A start is a fixed amount of work (Python's
imports, the app's, a first connection to each server): under 0.1 core it took about 20 s,
during which the instances already running carried a step of load alone (`bazaar bench
ramp`); boosted, a few seconds."""


@contextmanager
def boosted(groups: CpuGroups, processes: Sequence[RunProcess]) -> Iterator[None]:
    """While the block runs, `processes` held to a quota under STARTUP_CORES get that much."""
    held = [
        (p.name, quota)
        for p in processes
        if (quota := p.cpu_quota) is not None and quota < STARTUP_CORES
    ]
    for name, _ in held:
        groups.make(name, STARTUP_CORES)
    try:
        yield
    finally:
        for name, quota in held:
            groups.make(name, quota)


def _running(folder: Folder) -> Supervisor:
    supervisor = Supervisor(folder.layout, timeout=120)
    if not supervisor.answers():
        raise UpError(f"not up (nothing answers under {folder.root}): `bazaar up` first")
    return supervisor


def restart(service: str, folder: Folder, say: Say) -> None:
    if service not in SERVICES:
        raise UpError(f"unknown service {service!r}: one of {', '.join(SERVICES)}")
    supervisor = _running(folder)
    run = RunRecord.load(folder.run)
    stopped = {p.name for p in supervisor.programs() if p.state == "STOPPED"}
    processes = [p for p in run.of(service) if p.name not in stopped]
    for process in sorted(processes, key=lambda p: p.kind == "worker"):
        name, port = process.name, process.port
        serving = process.kind == "serve"
        say(f"restarting {name}")
        if serving:
            haproxy.set_state(folder.haproxy_socket, service, name, "drain")
            _wait_drained(folder, service, name)
        supervisor.stop(f"{service}:{name}")
        with boosted(folder.cpu_groups, [process]):
            supervisor.start(f"{service}:{name}")
            _wait_ready(name, port)
        if serving:
            haproxy.set_state(folder.haproxy_socket, service, name, "ready")
            _wait_up(folder, service, name)
        say(f"{name} is back and ready")


def set_in_service(service: str, count: int, folder: Folder, say: Say) -> list[str]:
    """Keep the first `count` API instances `up` started for `service` running and in
    HAProxy's rotation, and the others stopped; return the names in service once HAProxy
    sees exactly those UP. Instances are brought back before others are taken out; those
    that start, and those that stop, do so together."""
    if service not in SERVICES:
        raise UpError(f"unknown service {service!r}: one of {', '.join(SERVICES)}")
    supervisor = _running(folder)
    instances = RunRecord.load(folder.run).of(service, "serve")
    if not 1 <= count <= len(instances):
        raise UpError(
            f"{service}: 1 to {len(instances)} instances in service (`bazaar up` started"
            f" {len(instances)}), got {count}"
        )
    states = {p.name: p.state for p in supervisor.programs()}
    kept = [p.name for p in instances[:count]]

    def in_rotation(process: RunProcess) -> None:
        haproxy.set_state(folder.haproxy_socket, service, process.name, "ready")

    _start_ready(folder, supervisor, instances[:count], states, say, then=in_rotation)
    out = [p.name for p in instances[count:]]
    leaving = [name for name in out if states[name] not in DOWN_STATES]
    for name in leaving:
        say(f"taking {name} out")
        haproxy.set_state(folder.haproxy_socket, service, name, "drain")
    for name in leaving:
        _wait_drained(folder, service, name)
        supervisor.stop(f"{service}:{name}", wait=False)
    _wait_stopped(supervisor, leaving)
    for name in out:
        haproxy.set_state(folder.haproxy_socket, service, name, "maint")
    _wait_serving(folder, service, kept)
    _scrape_running(folder, supervisor)
    return kept


def set_workers(service: str, count: int, folder: Folder, say: Say) -> list[str]:
    """Keep the first `count` workers `up` wrote down for `service` running and the others
    stopped; return the names running once each is ready.

    A worker stops on SIGTERM without losing anything: it takes no new message, lets its
    running handlers finish (those that do not within its grace roll back) and closes its
    connection, so the broker hands every message it had not acknowledged to another
    worker; its outbox relay and job loops hold their claims in transactions that either
    commit with their effect or roll back, leaving the rows to the workers that stay."""
    supervisor = _running(folder)
    workers = RunRecord.load(folder.run).of(service, "worker")
    if not 1 <= count <= len(workers):
        raise UpError(f"{service}: 1 to {len(workers)} workers running, got {count}")
    states = {p.name: p.state for p in supervisor.programs()}
    _start_ready(folder, supervisor, workers[:count], states, say)
    leaving = [p.name for p in workers[count:] if states[p.name] not in DOWN_STATES]
    for name in leaving:
        say(f"stopping {name}")
        supervisor.stop(f"{service}:{name}", wait=False)
    _wait_stopped(supervisor, leaving)
    _scrape_running(folder, supervisor)
    return [p.name for p in workers[:count]]


class Autoscaled(UpError):
    """The autoscaler of the running `up` owns this count."""


def refuse_autoscaled(service: str, folder: Folder) -> None:
    """`Autoscaled` when the autoscaler of the running `up` owns the count of `service`'s
    API instances: a count set by hand would last until its next decision (`UpError` when
    nothing is up)."""
    _running(folder)
    scaling = RunRecord.load(folder.run).topology.autoscale
    if scaling is None or service not in scaling.ranges:
        return
    low, high = scaling.ranges[service]
    raise Autoscaled(
        f"{service} is autoscaled within {low}..{high} (`bazaar up --autoscale"
        f" {service}={low}..{high}`): the autoscaler sets its count. To change that, `bazaar"
        f" down`, then `bazaar up` with another range in --autoscale, or without {service} in"
        f" it (and --instances {service}=N) to scale it by hand."
    )


def _scrape_running(folder: Folder, supervisor: Supervisor) -> None:
    """Rewrite Prometheus's target file with every process but those `scale` stopped."""
    run = RunRecord.load(folder.run)
    stopped = {p.name for p in supervisor.programs() if p.state == "STOPPED"}
    groups = prometheus.target_groups(run.processes, run.topology.stats_port, stopped)
    prometheus.write_targets(prometheus.Files(folder.prometheus), groups)


def _start_ready(
    folder: Folder,
    supervisor: Supervisor,
    processes: Sequence[RunProcess],
    states: dict[str, str],
    say: Say,
    then: Callable[[RunProcess], None] | None = None,
) -> None:
    """Start those of `processes` that are down (together, boosted), then wait until each is
    ready and call `then` with it."""
    starting = [p for p in processes if states[p.name] in DOWN_STATES]
    with boosted(folder.cpu_groups, starting):
        for process in starting:
            say(f"starting {process.name}")
            supervisor.start(f"{process.service}:{process.name}", wait=False)
        for process in processes:
            _wait_ready(process.name, process.port)
            if then is not None:
                then(process)


def _wait_ready(name: str, port: int) -> None:
    try:
        wait_url(f"http://127.0.0.1:{port}/readyz", READY_TIMEOUT, what=name)
    except NotReady as error:
        raise UpError(str(error)) from None


def _wait_stopped(supervisor: Supervisor, names: list[str]) -> None:
    deadline = time.monotonic() + STOP_TIMEOUT
    while True:
        states = supervisor.programs()
        running = [p.name for p in states if p.name in names and p.state not in DOWN_STATES]
        if not running:
            return
        if time.monotonic() > deadline:
            raise UpError(f"{', '.join(running)} did not stop in {STOP_TIMEOUT:.0f} s")
        time.sleep(0.1)


def _wait_serving(folder: Folder, service: str, names: list[str]) -> None:
    """Until HAProxy sees `names` UP and no other server of the backend UP."""
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        views = [v for v in haproxy.server_views(folder.haproxy_socket) if v.backend == service]
        if {v.server for v in views if v.status == "UP"} == set(names):
            return
        if time.monotonic() > deadline:
            seen = ", ".join(f"{v.server} {v.status}" for v in views)
            raise UpError(f"HAProxy does not see exactly {', '.join(names)} UP: {seen}")
        time.sleep(0.1)


def _view(folder: Folder, service: str, name: str) -> haproxy.ServerView:
    views = haproxy.server_views(folder.haproxy_socket)
    return next(v for v in views if v.backend == service and v.server == name)


def _wait_drained(folder: Folder, service: str, name: str) -> None:
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while time.monotonic() < deadline and _view(folder, service, name).sessions > 0:
        time.sleep(0.1)


def _wait_up(folder: Folder, service: str, name: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if _view(folder, service, name).status == "UP":
            return
        time.sleep(0.1)
    raise UpError(f"HAProxy does not see {name} UP after {READY_TIMEOUT} s")


def log_files(target: str, folder: Folder) -> list[str]:
    """The log files of a service's processes, or of one program (`catalog-0`, `haproxy`,
    `redis`, `mailsink`, `supervisord`)."""
    logs = folder.layout.logs
    pattern = f"{target}-*.log" if target in SERVICES else f"{target}.log"
    files = sorted(logs.glob(pattern))
    if not files:
        raise UpError(f"no log of {target!r} under {logs}")
    return [str(f) for f in files]


def tail(files: list[str], lines: int, follow: bool) -> int:
    """`tail` prints the files (headed by their names when several); `-F` follows them
    across supervisord's log rotation until Ctrl-C."""
    command = ["tail", "-n", str(lines), *(["-F"] if follow else []), *files]
    try:
        return subprocess.run(command, check=False).returncode
    except KeyboardInterrupt:
        return 0
