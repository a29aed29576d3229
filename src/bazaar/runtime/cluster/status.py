"""`bazaar status`: every process with its state, pid, uptime, restarts and readiness;
HAProxy's view of each backend server; replica lag; queue depths and dead letters; emails held;
the autoscaler's last decisions (`up --autoscale`).

Each part is asked with a bounded wait, and a part that does not answer says so instead of
hiding the rest.
"""

import asyncio
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec

from bazaar.platform.settings import SettingsError
from bazaar.runtime.cluster import autoscale, haproxy
from bazaar.runtime.cluster.folder import Folder, read_env_file
from bazaar.runtime.cluster.mailsink import count_messages
from bazaar.runtime.cluster.record import RunRecord
from bazaar.runtime.cluster.supervisor import Supervisor, is_alive

ASK_TIMEOUT = 3.0
Report = dict[str, Any]
"""What `gather` found, as `bazaar status --json` prints it."""


def running_environment(folder: Folder) -> dict[str, str]:
    """The processes' settings, as `up` wrote them to the env file."""
    return read_env_file(folder.env_file)


def tools_environment(folder: Folder) -> dict[str, str] | None:
    """The settings of the data commands beside the `bazaar up` running on `folder`
    (`Folder.tools_env_file`), or None when none runs there: a folder left by a `bazaar up`
    that was stopped, killed or is gone with its machine keeps its env files, but no live
    supervisord that answers on its socket."""
    try:
        run = RunRecord.load(folder.run)
        environment = read_env_file(folder.tools_env_file)
    except (OSError, ValueError):  # msgspec's DecodeError is a ValueError
        return None
    if not is_alive(run.supervisord_pid):
        return None
    if not Supervisor(folder.layout, timeout=ASK_TIMEOUT).answers():
        return None
    return environment


def gather(folder: Folder) -> Report:
    supervisor = Supervisor(folder.layout, timeout=ASK_TIMEOUT)
    if not supervisor.answers():
        return {"up": False, "folder": str(folder.root)}
    run = RunRecord.load(folder.run)
    environment = running_environment(folder)
    ports = {p.name: p.port for p in run.processes}
    restarts = supervisor.exits()
    now = time.time()
    states = supervisor.programs()
    programs = [
        {
            "name": program.name,
            "group": program.group,
            "state": program.state,
            "pid": program.pid,
            "uptime": round(now - program.started) if program.state == "RUNNING" else 0,
            "restarts": restarts.get(program.name, 0),
            "port": ports.get(program.name),
            "ready": _ready(ports.get(program.name)) if program.state == "RUNNING" else None,
        }
        for program in states
    ]
    try:
        backends = [view.__dict__ for view in haproxy.server_views(folder.haproxy_socket)]
    except OSError as error:
        backends = [{"error": f"HAProxy's stats socket: {error}"}]
    return {
        "up": True,
        "folder": str(folder.root),
        "url": f"http://127.0.0.1:{run.topology.port}",
        "stats": f"http://127.0.0.1:{run.topology.stats_port}/stats",
        "prometheus": (
            f"http://127.0.0.1:{run.topology.prometheus_port}"
            if run.topology.prometheus_port
            else None
        ),
        "budget": msgspec.structs.asdict(run.budget),
        "broker": _broker(
            environment["BAZAAR_BROKER_URL"], any(p.name == "rabbitmq" for p in states)
        ),
        "programs": programs,
        "backends": backends,
        "replicas": asyncio.run(_replica_lag(environment["BAZAAR_DATABASE_URL"])),
        "queues": asyncio.run(_queues(environment)),
        "emails": count_messages(folder.mail),
        "autoscale": autoscale.status_part(folder),
    }


def _broker(url: str, own: bool) -> str:
    """Where the events go, without the password; whether the node is `up`'s own."""
    parts = urlsplit(url)
    where = f"{parts.scheme}://{parts.hostname}:{parts.port or 5672}{parts.path or '/'}"
    return f"{where} ({'a node of its own' if own else 'BAZAAR_BROKER_URL'})"


def _ready(port: int | None) -> bool | None:
    if port is None:
        return None
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


async def _replica_lag(database_url: str) -> list[dict[str, Any]] | str:
    import asyncpg

    from bazaar.platform.postgres import maintenance_connection

    try:
        async with asyncio.timeout(ASK_TIMEOUT):
            connection = await maintenance_connection(database_url)
            try:
                rows = await connection.fetch(
                    "SELECT client_port, state, extract(epoch FROM replay_lag) AS lag,"
                    " pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) AS behind"
                    " FROM pg_stat_replication ORDER BY client_port"
                )
            finally:
                await connection.close()
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        return f"the primary does not answer ({type(error).__name__})"
    return [
        {
            "state": row["state"],
            "lag_seconds": float(row["lag"] or 0),
            "bytes_behind": int(row["behind"] or 0),
        }
        for row in rows
    ]


async def _queues(environment: Mapping[str, str]) -> list[dict[str, Any]] | str:
    """Messages ready in each consumer's queue and its dead-letter queue (nothing is created)."""
    from bazaar.runtime.config import Settings
    from bazaar.runtime.embedded import Runtime

    runtime = Runtime(Settings.from_env(environment))
    consumers = {s.consumer for p in runtime.parts for s in p.subscriptions if not s.is_broadcast}
    try:
        async with asyncio.timeout(ASK_TIMEOUT * 2):
            depths = await runtime.platform.bus.queue_depths(consumers)
    except (OSError, TimeoutError, SettingsError) as error:
        return f"RabbitMQ does not answer ({type(error).__name__})"
    finally:
        await runtime.platform.close()
    return [{"consumer": d.consumer, "ready": d.ready, "dead": d.dead} for d in depths]


def render(report: Report) -> str:
    if not report["up"]:
        return f"Not up (nothing answers under {report['folder']})."
    lines = [
        f"Bazaar up at {report['url']}  stats {report['stats']}  ({report['folder']})",
        f"Prometheus at {report['prometheus'] or '(none)'}",
        f"connections: at most {report['budget']['total']} of max_connections"
        f" {report['budget']['max_connections']} per PostgreSQL server",
        "",
        f"{'process':<22}{'state':<10}{'pid':>8}{'uptime':>9}{'restarts':>9}  ready",
    ]
    for p in report["programs"]:
        ready = {True: "yes", False: "NO", None: "-"}[p["ready"]]
        lines.append(
            f"{p['name']:<22}{p['state']:<10}{p['pid']:>8}{p['uptime']:>8}s{p['restarts']:>9}"
            f"  {ready}"
        )
    lines += ["", "HAProxy:"]
    for b in report["backends"]:
        if "error" in b:
            lines.append(f"  {b['error']}")
            continue
        lines.append(
            f"  {b['backend'] + '/' + b['server']:<31} {b['status']:<8}{b['check']:<20}"
            f"now {b['sessions']:<4} total {b['total']:<8} down {b['down_transitions']}x"
        )
    lines += ["", "Replicas:"]
    replicas = report["replicas"]
    if isinstance(replicas, str) or not replicas:
        lines.append(f"  {replicas or 'none streaming'}")
    else:
        for index, r in enumerate(replicas, 1):
            lines.append(
                f"  replica {index}: {r['state']}, lag {r['lag_seconds']:.3f} s,"
                f" {r['bytes_behind']} bytes behind"
            )
    lines += ["", f"Queues on {report['broker']} (ready / dead-lettered):"]
    queues = report["queues"]
    if isinstance(queues, str):
        lines.append(f"  {queues}")
    else:
        for q in queues:
            lines.append(f"  {q['consumer']:<30}{q['ready']!s:>8} /{q['dead']!s:>6}")
    lines += ["", f"Emails in the mail sink: {report['emails']}"]
    lines += autoscale.render(report.get("autoscale"))
    return "\n".join(lines)
