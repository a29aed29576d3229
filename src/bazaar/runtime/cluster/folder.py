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
    def cpu_groups(self) -> CpuGroups:
        """The CPU quota groups of its instances (`--cpu-quota`)."""
        return CpuGroups(root_name(self.data_dir))

    @property
    def env_file(self) -> Path:
        """The environment of the processes, for `set -a; . env` before another command."""
        return self.root / "env"


def bazaar_command() -> list[str]:
    """The `bazaar` executable beside this Python (the virtualenv's), else on PATH."""
    beside = Path(sys.executable).parent / "bazaar"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("bazaar")
    if found:
        return [found]
    return [sys.executable, "-c", "from bazaar.cli import main; main()"]


def child_environment(settings: Mapping[str, str]) -> dict[str, str]:
    """The environment of a process started from this one: what it inherits (PATH, HOME...)
    without this process's `BAZAAR_*` variables, and `settings` for its own."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    return inherited | dict(settings)
