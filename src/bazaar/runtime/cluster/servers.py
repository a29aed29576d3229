"""The servers that keep the data of `bazaar up`: each one the environment names, or else one
of its own under the `up` folder, on a port chosen once and kept in `state.json` (so a second
`up` finds its data where the first left it).

- PostgreSQL: `BAZAAR_DATABASE_URL` (with `BAZAAR_REPLICA_URLS`), else a primary made with
  `initdb` and `--replicas` streaming replicas made with `pg_basebackup -R` (pgcluster), started
  and stopped with `pg_ctl`, outside supervisord: PostgreSQL supervises its own backends.
- Redis: `BAZAAR_REDIS_URL`, else `redis-server` on a port of its own (append-only file under
  the folder), run by supervisord.
- SMTP: `BAZAAR_SMTP_URL`, else the mail sink (mailsink.py), run by supervisord.
- RabbitMQ: `BAZAAR_BROKER_URL`, else a node of its own (rabbitmq_node.py: its own node name,
  AMQP, distribution and epmd ports, cookie and data), run by supervisord.
"""

import json
import os
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import redis

from bazaar.runtime.cluster.pgcluster import SERVER_USER, LocalPostgres, prepare_folder
from bazaar.runtime.cluster.rabbitmq_node import RabbitNode
from bazaar.runtime.cluster.topology import PortSource

MAX_CONNECTIONS = 200
"""`max_connections` of the primary `bazaar up` makes (its replicas copy it)."""


class ServersError(RuntimeError):
    """A server is missing, or the kept data does not fit the topology asked for."""


@dataclass
class State:
    """What must stay the same from one `up` to the next."""

    primary_port: int = 0
    replica_ports: list[int] = field(default_factory=list)
    redis_port: int = 0
    smtp_port: int = 0
    broker_port: int = 0
    broker_dist_port: int = 0
    epmd_port: int = 0
    shards: int = 0
    max_connections: int = MAX_CONNECTIONS

    @classmethod
    def load(cls, path: Path) -> "State":
        if not path.exists():
            return cls()
        return cls(**json.loads(path.read_text()))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    def claim_ports(self, replicas: int, shards: int, ports: PortSource) -> None:
        """Ports for servers not made yet; refuse a shard count the data was not made for:
        orders are placed by shard, so another count would lose track of them."""
        if self.shards and self.shards != shards:
            raise ServersError(
                f"the data was made with --shards {self.shards}: start with the same count"
                " (or remove the data folder to start afresh)"
            )
        self.shards = shards
        self.primary_port = self.primary_port or ports.take()
        while len(self.replica_ports) < replicas:
            self.replica_ports.append(ports.take())
        self.redis_port = self.redis_port or ports.take()
        self.smtp_port = self.smtp_port or ports.take()
        self.broker_port = self.broker_port or ports.take()
        self.broker_dist_port = self.broker_dist_port or ports.take()
        self.epmd_port = self.epmd_port or ports.take()

    def rabbit_node(self, folder: Path) -> RabbitNode:
        """The node of our own under `folder` (its name follows its AMQP port, kept here)."""
        return RabbitNode(folder, self.broker_port, self.broker_dist_port, self.epmd_port)


@dataclass
class OwnPostgres:
    """The primary and its streaming replicas under `folder`."""

    folder: Path
    state: State
    replicas: int

    @property
    def primary(self) -> LocalPostgres:
        return LocalPostgres(self.folder / "primary", self.state.primary_port)

    @property
    def replica_servers(self) -> list[LocalPostgres]:
        return [
            LocalPostgres(self.folder / f"replica-{index + 1}", port)
            for index, port in enumerate(self.state.replica_ports[: self.replicas])
        ]

    def all_made(self) -> list[LocalPostgres]:
        """Every server with data under the folder, running or not (replicas first)."""
        made = [
            LocalPostgres(self.folder / f"replica-{index + 1}", port)
            for index, port in enumerate(self.state.replica_ports)
        ]
        return [server for server in [*made, self.primary] if server.exists]

    def ensure(self) -> None:
        """Make what is missing (once), then start every server that is not running."""
        _check_reachable(self.folder.parent)
        prepare_folder(self.folder)
        primary = self.primary
        if not primary.exists:
            primary.init_primary(max_connections=self.state.max_connections)
        _start(primary)
        for replica in self.replica_servers:
            if not replica.exists:
                replica.init_replica(primary)
            _start(replica)

    def stop(self) -> None:
        for server in self.all_made():
            server.stop()

    def pids(self) -> list[int]:
        return [pid for server in self.all_made() for pid in server.pids()]


def _start(server: LocalPostgres) -> None:
    pid = server.postmaster_pid()
    if pid is not None and Path(f"/proc/{pid}").exists():
        return
    server.start()


def _check_reachable(folder: Path) -> None:
    """As root the servers run as `postgres`, which must be able to reach their folder."""
    if os.geteuid() != 0:
        return
    done = subprocess.run(
        ["runuser", "-u", SERVER_USER, "--", "test", "-x", str(folder)],
        capture_output=True,
        timeout=10,
    )
    if done.returncode != 0:
        raise ServersError(
            f"PostgreSQL runs as the `{SERVER_USER}` user, who cannot enter {folder}: give the"
            " data folder and its parents execute permission for others (chmod o+x), or set"
            " BAZAAR_DATA_DIR to another folder"
        )


def redis_command(folder: Path, port: int) -> list[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServersError("redis-server is not installed (Debian package `redis-server`)")
    folder.mkdir(parents=True, exist_ok=True)
    return [
        binary,
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(folder),
        "--appendonly",
        "yes",
        "--save",
        "",
        "--daemonize",
        "no",
        "--protected-mode",
        "yes",
    ]


def wait_for_redis(url: str, timeout: float = 20.0) -> None:
    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return
            except redis.RedisError:
                time.sleep(0.2)
        raise ServersError(f"Redis at {url} did not answer in {timeout:.0f} s")
    finally:
        client.close()
