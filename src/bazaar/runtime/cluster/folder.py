"""Where `bazaar up` keeps everything (`<data dir>/up/`), and the `bazaar` command its
programs run, in which environment."""

import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bazaar.platform.settings import PREFIX
from bazaar.runtime.cluster.cpulimit import CpuGroups, root_name
from bazaar.runtime.cluster.supervisor import Layout


@dataclass(frozen=True)
class Folder:
    """Everything `bazaar up` keeps, under `<data dir>/up/`."""

    data_dir: Path

    @property
    def root(self) -> Path:
        return self.data_dir / "up"

    @property
    def layout(self) -> Layout:
        return Layout(self.root)

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def run(self) -> Path:
        """What the running topology is: processes, ports, pids (removed by `down`)."""
        return self.root / "run.json"

    @property
    def haproxy_config(self) -> Path:
        return self.root / "haproxy.cfg"

    @property
    def haproxy_socket(self) -> Path:
        return self.root / "haproxy.sock"

    @property
    def fault_proxy_socket(self) -> Path:
        """Where the fault proxies take commands (`up --fault-proxies`)."""
        return self.root / "faultproxy.sock"

    @property
    def mail(self) -> Path:
        return self.root / "mail"

    @property
    def rabbitmq(self) -> Path:
        return self.root / "rabbitmq"

    @property
    def prometheus(self) -> Path:
        """Prometheus's configuration, target file and data (prometheus.py)."""
        return self.root / "prometheus"

    @property
    def cpu_groups(self) -> CpuGroups:
        """The CPU quota groups of its instances (`--cpu-quota`)."""
        return CpuGroups(root_name(self.data_dir))

    @property
    def env_file(self) -> Path:
        """The environment of the processes, for `set -a; . env` before another command."""
        return self.root / "env"

    @property
    def tools_env_file(self) -> Path:
        """The environment of the data commands run beside it (`migrate`, `admin create`,
        `seed`, `dlq`): the processes' with the servers themselves, no PgBouncer (which
        `bazaar migrate` must not go through) nor fault proxy in between."""
        return self.root / "tools.env"


def write_env_file(path: Path, environment: Mapping[str, str]) -> None:
    """`environment` as `KEY='value'` lines, readable by the owner only (it holds passwords)."""
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text("".join(f"{key}='{value}'\n" for key, value in sorted(environment.items())))


def read_env_file(path: Path) -> dict[str, str]:
    """What `write_env_file` wrote."""
    environment = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        environment[key] = value[1:-1]
    return environment


def bazaar_command() -> list[str]:
    """The `bazaar` executable beside this Python (the virtualenv's), else on PATH."""
    beside = Path(sys.executable).parent / "bazaar"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("bazaar")
    if found:
        return [found]
    return [sys.executable, "-c", "from bazaar.cli import main; main()"]


COMPLETE = {f"{PREFIX}ENV_FILE": "", f"{PREFIX}TARGET": "environment"}
"""What a process started from this one is told: its environment is complete, so it reads
no `.env` file in its working directory and looks for no running `bazaar up` (the `bazaar
migrate` that `up` runs migrates the servers it names, not those of the `up` starting)."""


def child_environment(settings: Mapping[str, str]) -> dict[str, str]:
    """The environment of a process started from this one: what it inherits (PATH, HOME...)
    without this process's `BAZAAR_*` variables, `settings` for its own, and `COMPLETE`."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    return inherited | dict(settings) | COMPLETE
