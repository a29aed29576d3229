"""The fault kit: the faults a production shop meets, done to a running `bazaar up`.

Every fault targets only the processes and ports of the topology under `folder` (what its
run.json, state.json and supervisord name), on 127.0.0.1: never the machine's own servers.

- a program crashes: `kill(name)` sends SIGKILL to its whole process group (granian's workers
  too), as the kernel's OOM killer or a lost container would; supervisord starts it again;
- a program freezes: `pause(name, seconds)` stops its group with SIGSTOP (a long GC pause, a
  swapped-out VM), then lets it go on;
- the RabbitMQ node restarts (`restart_broker`), the PostgreSQL primary crashes and comes back
  (`crash_primary`: `pg_ctl -m immediate`, then a start that recovers from the WAL), a replica
  freezes (`pause_replica`), Redis dies (`kill("redis")`);
- a connection is cut, slowed or blackholed: the fault proxies `up --fault-proxies` puts
  between the processes and each server (faultproxy.py), set through `proxy(server, mode)`.
"""

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from bazaar.runtime.cluster.faultproxy import Mode, set_mode
from bazaar.runtime.cluster.folder import Folder
from bazaar.runtime.cluster.pgcluster import LocalPostgres
from bazaar.runtime.cluster.record import RunRecord
from bazaar.runtime.cluster.servers import OwnPostgres, State
from bazaar.runtime.cluster.supervisor import Supervisor


class FaultError(RuntimeError):
    """The fault cannot be done on this topology (the message says why)."""


@dataclass(frozen=True)
class FaultKit:
    folder: Folder

    @classmethod
    def of(cls, data_dir: Path) -> "FaultKit":
        return cls(Folder(data_dir))

    @property
    def supervisor(self) -> Supervisor:
        return Supervisor(self.folder.layout, timeout=60)

    def run(self) -> RunRecord:
        return RunRecord.load(self.folder.run)

    def instance(self, service: str, kind: str = "serve", index: int = 0) -> str:
        """The name of a service's API instance (`kind="serve"`) or of its worker."""
        found = [p.name for p in self.run().of(service, kind)]
        if len(found) <= index:
            raise FaultError(f"{service} has no {kind} number {index}: {', '.join(found)}")
        return found[index]

    def pid_of(self, name: str) -> int:
        program = next((p for p in self.supervisor.programs() if p.name == name), None)
        if program is None or not program.pid:
            raise FaultError(f"{name} is not running under {self.folder.root}")
        return program.pid

    def kill(self, name: str) -> int:
        """SIGKILL to the program's process group; returns the pid it had."""
        pid = self.pid_of(name)
        os.killpg(pid, signal.SIGKILL)
        return pid

    def pause(self, name: str, seconds: float) -> None:
        pid = self.pid_of(name)
        os.killpg(pid, signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            os.killpg(pid, signal.SIGCONT)

    def restart_broker(self) -> None:
        """Stop the RabbitMQ node of `up`'s own (its queues are durable) and start it again."""
        names = {p.full_name for p in self.supervisor.programs()}
        if "broker:rabbitmq" not in names:
            raise FaultError("this `up` uses a broker it did not start (BAZAAR_BROKER_URL)")
        self.supervisor.stop("broker:rabbitmq")
        self.supervisor.start("broker:rabbitmq")

    def _postgres(self) -> OwnPostgres:
        state = State.load(self.folder.state)
        postgres = OwnPostgres(self.folder.root / "postgres", state, len(state.replica_ports))
        if not postgres.primary.exists:
            raise FaultError("this `up` uses a PostgreSQL it did not start (BAZAAR_DATABASE_URL)")
        return postgres

    def crash_primary(self, down_seconds: float) -> None:
        """`pg_ctl -m immediate` (every server process stops at once, as in a crash), then,
        `down_seconds` later, a start that recovers from the WAL."""
        primary = self._postgres().primary
        primary.stop("immediate")
        time.sleep(down_seconds)
        primary.start()

    def replica(self, index: int = 0) -> LocalPostgres:
        replicas = self._postgres().replica_servers
        if len(replicas) <= index:
            raise FaultError(f"this `up` has {len(replicas)} replica(s)")
        return replicas[index]

    def pause_replica(self, seconds: float, index: int = 0) -> None:
        """SIGSTOP to every process of a replica: it holds its connections and answers
        nothing, as a frozen VM would."""
        pids = self.replica(index).pids()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)

    def proxy(self, server: str, mode: Mode, seconds: float, delay_ms: int = 0) -> None:
        """Put `server`'s fault proxy (postgres, redis or rabbitmq) in `mode` for `seconds`,
        then back to passing everything."""
        socket = self.folder.fault_proxy_socket
        if not socket.exists():
            raise FaultError("this `up` has no fault proxies: start it with --fault-proxies")
        set_mode(socket, server, mode, delay_ms)
        try:
            time.sleep(seconds)
        finally:
            set_mode(socket, server, "pass")
