"""A PostgreSQL primary with one streaming replica, started by the suite on free ports.

The machine's own server allows no replication, so the tests make their own pair with the
machine's binaries (`initdb`, `pg_basebackup -R`) under a temporary folder, once per run, and
stop and remove it at the end. In CI missing binaries fail the run; elsewhere the tests that
need the pair are skipped with a loud reason.
"""

import contextlib
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bazaar.runtime.cluster.pgcluster import ClusterError, LocalPostgres, binaries, prepare_folder


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class ReplicatedServer:
    primary: LocalPostgres
    replica: LocalPostgres

    def pause_replay(self) -> list[int]:
        """Stop the replica's replay (it still answers, with older data): SIGSTOP its
        startup process."""
        return self._signal(self.replica.backend_pids("startup"), signal.SIGSTOP)

    def pause_replica(self) -> list[int]:
        """Freeze the whole replica: every one of its processes gets SIGSTOP."""
        return self._signal(self.replica.pids(), signal.SIGSTOP)

    def resume(self) -> None:
        for pid in self.replica.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    @staticmethod
    def _signal(pids: list[int], signum: int) -> list[int]:
        assert pids, "the replica has no such process"
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):  # a backend that has just exited
                os.kill(pid, signum)
        return pids


def require_binaries() -> None:
    """PostgreSQL's server binaries, or a failure in CI (a loud skip elsewhere)."""
    try:
        binaries()
    except ClusterError as error:
        if os.environ.get("CI"):
            pytest.fail(str(error))
        pytest.skip(f"SKIPPED, NOT TESTED: {error}")


def own_server(
    *, durable: bool, configure: Callable[[LocalPostgres, Path], None] | None = None
) -> Iterator[LocalPostgres]:
    """A PostgreSQL server of the test's own, which it may stop, crash or reconfigure:
    `configure(server, folder)` runs between `initdb` and the start."""
    require_binaries()
    root = Path(tempfile.mkdtemp(prefix="bazaar-test-pg-"))
    prepare_folder(root)
    server = LocalPostgres(root / "primary", free_port())
    try:
        server.init_primary(durable=durable)
        if configure is not None:
            configure(server, root)
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def start_replicated_server() -> Iterator[ReplicatedServer]:
    require_binaries()
    root = Path(tempfile.mkdtemp(prefix="bazaar-test-pg-"))
    prepare_folder(root)
    server = ReplicatedServer(
        primary=LocalPostgres(root / "primary", free_port()),
        replica=LocalPostgres(root / "replica", free_port()),
    )
    try:
        server.primary.init_primary(durable=False)
        server.primary.start()
        server.replica.init_replica(server.primary)
        server.replica.start()
        yield server
    finally:
        server.resume()
        server.replica.stop()
        server.primary.stop()
        shutil.rmtree(root, ignore_errors=True)
