"""`bazaar up` and `bazaar down`: the scaled topology on one machine.

`up` writes every configuration under `<data dir>/up/`, starts (or reuses) the servers,
has supervisord start Redis, the mail sink, a RabbitMQ node (those the environment does not
name) and Prometheus (prometheus.py), migrates once, then has supervisord start, in order:
every `bazaar serve` instance and the `bazaar worker`s of each service (one, or the minimum of
`--autoscale SERVICE-worker=MIN..MAX`); HAProxy in front. `down`
stops them in the reverse order, then PostgreSQL, and checks that no process it started is
left.
"""

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from bazaar.platform.keys import KEY_FILE, load_or_create_key
from bazaar.runtime.cluster import faultproxy, haproxy, pgbouncer, prometheus
from bazaar.runtime.cluster import supervisor as supervisor_config
from bazaar.runtime.cluster.budget import Budget, plan_budget, plan_pooled_budget
from bazaar.runtime.cluster.cpulimit import CpuGroup, CpuLimitError
from bazaar.runtime.cluster.folder import (
    Folder,
    bazaar_command,
    child_environment,
    write_env_file,
)
from bazaar.runtime.cluster.pgbouncer import PgBouncerError
from bazaar.runtime.cluster.pgcluster import ClusterError
from bazaar.runtime.cluster.rabbitmq_node import NodeError, wait_for_node
from bazaar.runtime.cluster.readiness import NotReady, wait_ready, wait_url
from bazaar.runtime.cluster.record import RunBudget, RunProcess, RunRecord, RunTopology
from bazaar.runtime.cluster.servers import (
    OwnPostgres,
    ServersError,
    State,
    redis_command,
    wait_for_redis,
)
from bazaar.runtime.cluster.settings import UpSettings
from bazaar.runtime.cluster.supervisor import (
    Program,
    Supervisor,
    SupervisorError,
    descendants,
    group_members,
    is_alive,
)
from bazaar.runtime.cluster.topology import (
    PortSource,
    Process,
    Topology,
    TopologyError,
    signal_of,
    worker_key,
)
from bazaar.runtime.services import SERVICES

MIGRATE_TIMEOUT = 300
READY_TIMEOUT = 120
Say = Callable[[str], None]


class UpError(RuntimeError):
    """`bazaar up` cannot run as asked; the message says what to change."""


def up(topology: Topology, settings: UpSettings, say: Say) -> RunRecord:
    """Bring everything up and return what runs (also written to run.json)."""
    folder = settings.folder
    folder.root.mkdir(parents=True, exist_ok=True)
    supervisor = Supervisor(folder.layout)
    if supervisor.answers():
        raise UpError(f"already up (supervisord on {folder.layout.socket}): `bazaar down` first")
    needed = (("haproxy", "haproxy"), ("supervisord", "supervisor"), ("prometheus", "prometheus"))
    for binary, package in needed:
        if shutil.which(binary) is None:
            raise UpError(f"{binary} is not installed (Debian package `{package}`)")
    try:
        return _start(topology, settings, supervisor, say)
    except BaseException as error:
        say("Start failed or interrupted: stopping what started")
        down(folder, say)
        if isinstance(
            error,
            ServersError
            | ClusterError
            | SupervisorError
            | PgBouncerError
            | NotReady
            | NodeError
            | CpuLimitError
            | faultproxy.FaultProxyError
            | prometheus.PrometheusError,
        ):
            raise UpError(str(error)) from None
        raise


def _start(topology: Topology, settings: UpSettings, supervisor: Supervisor, say: Say) -> RunRecord:
    folder = settings.folder
    state = State.load(folder.state)
    ports = PortSource()
    try:
        state.claim_ports(topology.replicas, topology.shards, ports)
    except ServersError as error:
        raise UpError(str(error)) from None
    state.save(folder.state)
    processes = topology.processes(ports)
    prometheus_port = ports.take()
    # first: without a writable cgroup, `up` fails before any server starts
    groups = {
        p.name: folder.cpu_groups.make(p.name, quota)
        for p in processes
        if (quota := topology.quota_of(p)) is not None
    }
    postgres = None
    if settings.database_url is None:
        postgres = OwnPostgres(folder.root / "postgres", state, topology.replicas)
        say(f"PostgreSQL: primary on {state.primary_port}, {topology.replicas} replica(s)")
        postgres.ensure()
    planner = plan_pooled_budget if topology.pgbouncer else plan_budget
    try:
        budget = planner(processes, topology.shards, _max_connections(settings, state))
    except TopologyError as error:
        raise UpError(str(error)) from None
    direct = _environment(settings, state, topology, postgres)  # for `bazaar migrate`
    bouncers = pgbouncer.plan(direct, folder.root / "pgbouncer", ports, budget.server)
    environment = pgbouncer.through(direct, bouncers)
    proxies: list[faultproxy.RouteSpec] = []
    if topology.fault_proxies:
        proxies, environment = faultproxy.plan(environment, ports.take)
    load_or_create_key(folder.data_dir / KEY_FILE)
    write_env_file(folder.env_file, environment)
    write_env_file(folder.tools_env_file, direct)
    balancer = haproxy.Balancer(topology.port, topology.stats_port, folder.haproxy_socket)
    folder.haproxy_config.write_text(haproxy.render(balancer, processes))
    _check_haproxy(folder.haproxy_config)
    recorded = [
        RunProcess(
            p.name,
            p.service,
            p.kind,
            p.port,
            cpu_quota=topology.quota_of(p),
            cpu_group=str(groups[p.name].path) if p.name in groups else None,
        )
        for p in processes
    ]
    held = topology.held_back(processes)
    monitoring = prometheus.Files(folder.prometheus)
    prometheus.prepare(monitoring, prometheus.target_groups(recorded, topology.stats_port, held))
    programs = _programs(settings, state, processes, budget, groups)
    if topology.autoscale:
        command = [*bazaar_command(), "autoscale", "--data-dir", str(folder.data_dir)]
        programs.append(Program("autoscaler", command, "autoscale", priority=300))
    programs.append(prometheus.program(monitoring, prometheus_port))
    programs += [pgbouncer.program(bouncer) for bouncer in bouncers]
    if proxies:
        socket = folder.fault_proxy_socket
        programs.append(faultproxy.program(bazaar_command(), socket, proxies))
    folder.layout.config.write_text(supervisor_config.render(folder.layout, programs, environment))
    supervisor_pid = supervisor.launch(child_environment({}))
    run = RunRecord(
        topology=RunTopology(
            instances=topology.instances,
            replicas=topology.replicas,
            shards=topology.shards,
            port=topology.port,
            stats_port=topology.stats_port,
            cpu_quota=topology.cpu_quota,
            fault_proxies=[str(route) for route in proxies],
            prometheus_port=prometheus_port,
            autoscale=topology.autoscale,
        ),
        processes=recorded,
        budget=RunBudget(
            max_connections=budget.max_connections,
            total=budget.total,
            pgbouncer=[bouncer.port for bouncer in bouncers],
        ),
        supervisord_pid=supervisor_pid,
    )
    run.save(folder.run)
    if "servers" in {p.group for p in programs}:
        extra = ", PgBouncer" if bouncers else ", fault proxies" if proxies else ""
        say("Redis and the mail sink" + extra)
        supervisor.start_group("servers")
    say(f"Prometheus on http://127.0.0.1:{prometheus_port} (its data in {monitoring.root})")
    supervisor.start_group("monitoring")
    if proxies:
        faultproxy.wait_listening(folder.fault_proxy_socket)
    node = None if settings.broker_url is not None else state.rabbit_node(folder.rabbitmq)
    if node is not None:
        say(f"RabbitMQ: node {node.name} on {node.port}")
        supervisor.start_group("broker")
    if settings.redis_url is None:
        wait_for_redis(environment["BAZAAR_REDIS_URL"])
    if node is not None:
        wait_for_node(node, lambda: supervisor.last_lines("rabbitmq"))
    say("Migrating every database (bazaar migrate)")
    _migrate(direct)
    for service in SERVICES:
        workers = topology.in_service(worker_key(service))
        say(f"{service}: {topology.in_service(service)} instance(s), {workers} worker(s)")
        members = [p.name for p in processes if p.service == service]
        if held.isdisjoint(members):
            supervisor.start_group(service)
            continue
        for name in members:  # an autoscaled service: those in service only
            if name not in held:
                supervisor.start(f"{service}:{name}", wait=False)
    wait_ready([p for p in processes if p.name not in held], READY_TIMEOUT, supervisor)
    supervisor.start_group("edge")
    for process in processes:
        if process.name in held and process.kind == "serve":  # the autoscaler starts it
            haproxy.set_state(folder.haproxy_socket, process.service, process.name, "maint")
    wait_url(f"http://127.0.0.1:{topology.port}/readyz", READY_TIMEOUT)
    if topology.autoscale:
        say(f"Autoscaler: {_ranges(topology)}")
        supervisor.start_group("autoscale")
    wait_url(f"http://127.0.0.1:{prometheus_port}/-/ready", READY_TIMEOUT, what="Prometheus")
    run.pids = sorted({*descendants(supervisor_pid), *(postgres.pids() if postgres else [])})
    run.save(folder.run)
    return run


def _ranges(topology: Topology) -> str:
    scaled = topology.autoscale
    if scaled is None:
        return ""
    return ", ".join(
        f"{name} {low} to {high} (target {scaled.targets[name]:g} {signal_of(name)})"
        for name, (low, high) in scaled.ranges.items()
    )


def _max_connections(settings: UpSettings, state: State) -> int:
    url = settings.database_url
    if url is None:
        return state.max_connections
    import asyncio

    from bazaar.platform.postgres import maintenance_connection

    async def ask() -> int:
        connection = await maintenance_connection(url)
        try:
            return int(await connection.fetchval("SHOW max_connections"))
        finally:
            await connection.close()

    return asyncio.run(ask())


def _environment(
    settings: UpSettings, state: State, topology: Topology, postgres: OwnPostgres | None
) -> dict[str, str]:
    """Every process's settings: the caller's `BAZAAR_*` over which the servers are named."""
    folder = settings.folder
    environment = dict(settings.passed_on)
    environment |= {
        "BAZAAR_DATA_DIR": str(folder.data_dir),
        "BAZAAR_ORDER_SHARDS": str(topology.shards),
        "BAZAAR_CATALOG_URL": f"http://127.0.0.1:{topology.port}",
    }
    environment.setdefault("BAZAAR_LOG_JSON", "true")
    if postgres is not None:
        environment["BAZAAR_DATABASE_URL"] = postgres.primary.url("bazaar")
        replicas = ",".join(replica.url("bazaar") for replica in postgres.replica_servers)
        environment.pop("BAZAAR_REPLICA_URLS", None)
        if replicas:
            environment["BAZAAR_REPLICA_URLS"] = replicas
    environment.pop("BAZAAR_ORDER_SHARD_URLS", None)
    environment.setdefault("BAZAAR_REDIS_URL", f"redis://127.0.0.1:{state.redis_port}/0")
    environment.setdefault("BAZAAR_SMTP_URL", f"smtp://127.0.0.1:{state.smtp_port}")
    environment.setdefault("BAZAAR_BROKER_URL", state.rabbit_node(folder.rabbitmq).url)
    return environment


def _programs(
    settings: UpSettings,
    state: State,
    processes: list[Process],
    budget: Budget,
    groups: Mapping[str, CpuGroup],
) -> list[Program]:
    """Every program supervisord runs; an instance with a CPU group starts inside it."""
    folder = settings.folder
    bazaar = bazaar_command()
    programs = []
    if settings.redis_url is None:
        command = redis_command(folder.root / "redis", state.redis_port)
        programs.append(Program("redis", command, "servers", priority=10))
    if settings.smtp_url is None:
        command = [
            *bazaar,
            "mailsink",
            "--port",
            str(state.smtp_port),
            "--folder",
            str(folder.mail),
        ]
        programs.append(Program("mailsink", command, "servers", priority=10))
    if settings.broker_url is None:
        node = state.rabbit_node(folder.rabbitmq)
        node.prepare()
        programs += node.programs()
    for process in processes:
        command = [*bazaar, process.kind, process.service, "--port", str(process.port)]
        if process.name in groups:
            command = groups[process.name].wrap(command)
        priority = 100 if process.kind == "serve" else 110
        environment = budget.pools[process.name].environment()
        programs.append(Program(process.name, command, process.service, environment, priority))
    haproxy_binary = shutil.which("haproxy") or "haproxy"
    command = [haproxy_binary, "-db", "-f", str(folder.haproxy_config)]
    programs.append(Program("haproxy", command, "edge", priority=200, stop_signal="USR1"))
    return programs


def _check_haproxy(config: Path) -> None:
    done = subprocess.run(
        ["haproxy", "-c", "-q", "-f", str(config)], capture_output=True, text=True, timeout=30
    )
    if done.returncode != 0:
        raise UpError(f"HAProxy refuses {config}: {done.stderr.strip() or done.stdout}")


def _migrate(environment: Mapping[str, str]) -> None:
    done = subprocess.run(
        [*bazaar_command(), "migrate"],
        env=child_environment(environment),
        capture_output=True,
        text=True,
        timeout=MIGRATE_TIMEOUT,
    )
    if done.returncode != 0:
        raise UpError(f"bazaar migrate failed:\n{done.stderr.strip() or done.stdout}")


def down(folder: Folder, say: Say) -> list[int]:
    """Stop everything `up` started in `folder`; return the pids that were checked gone."""
    supervisor = Supervisor(folder.layout, timeout=180)
    recorded = set(_recorded_pids(folder))
    if supervisor.answers():
        supervisor_pid = supervisor.pid()
        recorded |= {supervisor_pid, *descendants(supervisor_pid)}
        # a program's child whose parent was killed (kill -9) left the tree, not its group
        recorded |= set(group_members({p.pid for p in supervisor.programs() if p.pid}))
        say("Stopping Prometheus, HAProxy, the services, RabbitMQ, Redis and the mail sink")
        try:
            supervisor.shutdown()
        except SupervisorError as error:
            say(str(error))
    state = State.load(folder.state)
    postgres = OwnPostgres(folder.root / "postgres", state, len(state.replica_ports))
    recorded |= set(postgres.pids())
    if postgres.all_made():
        say("Stopping PostgreSQL")
        postgres.stop()
    left = _wait_gone(recorded, timeout=30)
    for pid in left:  # ours, and they outlived every bounded stop
        say(f"pid {pid} was left running: killed")
        _kill(pid)
    for group in folder.cpu_groups.remove_all():
        say(f"CPU group {group} still holds a process: left")
    folder.run.unlink(missing_ok=True)
    return sorted(recorded)


def _recorded_pids(folder: Folder) -> list[int]:
    try:
        run = RunRecord.load(folder.run)
    except (OSError, ValueError):  # msgspec's DecodeError is a ValueError
        return []
    return [run.supervisord_pid, *run.pids]


def _wait_gone(pids: set[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = [pid for pid in pids if pid and is_alive(pid)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [pid for pid in alive if is_alive(pid)]
    return alive


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
