"""PostgreSQL servers that Bazaar starts itself from the machine's binaries: a primary made
with `initdb` and streaming replicas made with `pg_basebackup -R`, each on its own port.

The integration tests start a primary and a replica with it, and `bazaar up` its topology.
PostgreSQL refuses to run as root, so when Bazaar runs as root the servers run as the
`postgres` system user (through `runuser`) and their folders belong to that user.
"""

import os
import pwd
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SERVER_USER = "postgres"
START_TIMEOUT = 60


class ClusterError(RuntimeError):
    """A PostgreSQL binary is missing or a server would not start or stop."""


def binaries() -> Path:
    """The folder of `initdb`, `pg_ctl` and `pg_basebackup` (Debian keeps them off PATH)."""
    found = shutil.which("pg_config")
    if found:
        folder = Path(
            subprocess.run([found, "--bindir"], capture_output=True, text=True).stdout.strip()
        )
        if (folder / "initdb").exists():
            return folder
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    if candidates:
        return candidates[0].parent
    if shutil.which("initdb"):
        return Path(shutil.which("initdb") or "").parent
    raise ClusterError("PostgreSQL's server binaries (initdb) are not installed")


def _as_server_user(command: Sequence[str]) -> list[str]:
    if os.geteuid() != 0:
        return list(command)
    return ["runuser", "-u", SERVER_USER, "--", *command]


def prepare_folder(folder: Path) -> None:
    """Create `folder` for the servers, owned by the user they run as."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        user = pwd.getpwnam(SERVER_USER)
        os.chown(folder, user.pw_uid, user.pw_gid)
    folder.chmod(0o700)


@dataclass
class LocalPostgres:
    """One PostgreSQL server under `data_dir`, listening on 127.0.0.1:`port`."""

    data_dir: Path
    port: int
    bin_dir: Path | None = None

    def __post_init__(self) -> None:
        self.bin_dir = self.bin_dir or binaries()

    @property
    def log_file(self) -> Path:
        return self.data_dir.with_suffix(".log")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def exists(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def _run(self, *command: str) -> None:
        assert self.bin_dir is not None
        argv = _as_server_user([str(self.bin_dir / command[0]), *command[1:]])
        done = subprocess.run(argv, capture_output=True, text=True, timeout=START_TIMEOUT * 2)
        if done.returncode != 0:
            raise ClusterError(f"{command[0]} failed: {done.stderr.strip() or done.stdout}")

    def init_primary(self, *, max_connections: int = 200, durable: bool = True) -> None:
        """A new primary that allows streaming replication from loopback, trusting local
        connections (a development cluster, never exposed beyond 127.0.0.1)."""
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-instructions",
            *([] if durable else ["--no-sync"]),
        )
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": "''",
            "max_connections": str(max_connections),
            "wal_level": "replica",
            "max_wal_senders": "10",
            "hot_standby": "on",
            "hot_standby_feedback": "on",
        }
        if not durable:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())

    def init_replica(self, primary: "LocalPostgres") -> None:
        """A streaming replica of `primary`: a base backup that follows it (`-R`)."""
        self._run(
            "pg_basebackup",
            "-h",
            "127.0.0.1",
            "-p",
            str(primary.port),
            "-U",
            "postgres",
            "-D",
            str(self.data_dir),
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
        )

    def start(self) -> None:
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-o",
            f"-p {self.port}",
            "-w",
            "-t",
            str(START_TIMEOUT),
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` disconnects clients and shuts down cleanly, `immediate` stops
        every process at once, as a crash would (the next start recovers from the WAL)."""
        if not (self.data_dir / "postmaster.pid").exists():
            return
        try:
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "30", "stop")
        except ClusterError:
            for pid in self.pids():
                os.kill(pid, signal.SIGKILL)

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def pids(self) -> list[int]:
        """The postmaster and every process it started."""
        parent = self.postmaster_pid()
        if parent is None:
            return []
        return [parent, *_children(parent)]

    def backend_pids(self, kind: str) -> list[int]:
        """This server's processes whose title names `kind` (e.g. 'startup', 'walreceiver')."""
        return [pid for pid in _children(self.postmaster_pid() or -1) if kind in _title(pid)]


def _children(parent: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            children.append(int(entry.name))
    return children


def _title(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
