"""The systems a benchmark runs against, each started in a folder of the run's own and stopped
afterwards: one `bazaar dev` process (embedded), the whole `bazaar up` topology (scaled), and
the hello-world baseline, each instance under test held to a CPU quota.
"""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bazaar.runtime.cluster.cpulimit import CpuGroups
from bazaar.runtime.cluster.folder import Folder, bazaar_command, child_environment
from bazaar.runtime.cluster.record import RunRecord
from bazaar.runtime.cluster.servers import OwnPostgres, State
from bazaar.runtime.cluster.status import running_environment
from bazaar.runtime.cluster.supervisor import Supervisor, descendants
from bazaar.runtime.cluster.topology import free_port
from bench.loadgen import Catalog
from bench.source import THIS, Source

ADMIN = ("bench-admin@example.com", "bench-admin-password")
STOCKED_PRODUCTS = 100
"""Products with stock for any run, spread so orders seldom wait on one row's lock."""
READY_TIMEOUT = 120.0
SCALED = ("catalog", "orders")
"""The services of which `bazaar up` starts several instances and `bazaar scale` chooses how
many serve."""


class StartError(RuntimeError):
    """The system under test would not start."""


def _bazaar_environment(settings: Mapping[str, str], source: Source = THIS) -> dict[str, str]:
    """A child's environment with `settings` for Bazaar, which logs warnings only, running
    `source`'s code; without the caller's `OTEL_*` variables, so that a shell that traces
    does not trace what the bench measures (its tracing experiment says how, in `settings`)."""
    inherited = child_environment(
        {"BAZAAR_LOG_LEVEL": "warning", **source.environment(), **settings}
    )
    return {k: v for k, v in inherited.items() if not k.startswith("OTEL_")} | dict(settings)


def _check(
    command: list[str],
    environment: Mapping[str, str],
    timeout: float = 600,
    stdin: str | None = None,
) -> str:
    done = subprocess.run(
        command,
        env=dict(environment),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise StartError(f"{' '.join(command[-3:])} failed: {done.stderr[-3000:] or done.stdout}")
    return done.stdout


def wait_ready(url: str, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise StartError(f"{url} was not ready within {timeout:.0f} s")


def _tree(pid: int) -> list[int]:
    return [pid, *descendants(pid)]


@dataclass
class Process:
    """A program the bench started itself, in a process group of its own."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout: float = 30) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()


def start_process(
    name: str, command: list[str], environment: Mapping[str, str], folder: Path
) -> Process:
    log = folder / f"{name}.log"
    popen = subprocess.Popen(
        command,
        env=dict(environment),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return Process(name, popen, log)


@dataclass
class _OwnServer:
    """A server the bench starts itself on a free port, under `cores` of CPU."""

    folder: Path
    cores: float | None
    groups: CpuGroups
    port: int = field(default_factory=free_port)
    process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def limited(self, name: str, command: list[str]) -> list[str]:
        return self.groups.make(name, self.cores).wrap(command) if self.cores else command

    def processes(self) -> dict[str, list[int]]:
        return {self.process.name: _tree(self.process.popen.pid)} if self.process else {}

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@dataclass
class Hello(_OwnServer):
    """The ceiling of the stack: a hello-world Litestar app, one granian worker, under the same
    quota as an instance under test."""

    def start(self) -> None:
        granian = Path(sys.executable).parent / "granian"
        command = [str(granian), "--interface", "asgi", "--workers", "1", "--port"]
        command += [str(self.port), "--no-access-log", "bench.hello:app"]
        command = self.limited("hello", command)
        root = Path(__file__).resolve().parent.parent
        environment = _bazaar_environment({"PYTHONPATH": str(root)})
        self.process = start_process("hello", command, environment, self.folder)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(self.url, timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise StartError(f"the hello-world app did not answer: see {self.process.log}")


def admin_token(url: str) -> str:
    """A fresh access token of the admin that `_seed` made."""
    with httpx.Client(base_url=url, timeout=30) as client:
        answer = client.post("/v1/auth/login", json={"email": ADMIN[0], "password": ADMIN[1]})
        answer.raise_for_status()
        return str(answer.json()["access_token"])


def prepare_catalog(url: str, folder: Path) -> tuple[Catalog, str]:
    """Sign the admin in, add the stocked products, and write the id files the workloads read.
    Returns them and an admin token."""
    with httpx.Client(base_url=url, timeout=30) as client:
        headers = {"Authorization": f"Bearer {admin_token(url)}"}
        run = os.urandom(3).hex().upper()

        def add(number: int) -> str:
            product = {
                "sku": f"BENCH-{run}-{number:04d}",
                "name": f"Bench stock {number}",
                "description": "Stock enough for any benchmark.",
                "category": "bench",
                "price": {"amount": 1000 + number, "currency": "USD"},
                "stock": 100_000_000,
            }
            answer = client.post("/v1/products", json=product, headers=headers)
            answer.raise_for_status()
            return str(answer.json()["id"])

        with ThreadPoolExecutor(8) as pool:  # instances under small quotas: ask several
            stocked = list(pool.map(add, range(STOCKED_PRODUCTS)))
        products: list[str] = []
        cursor = None
        while len(products) < 2000:
            params = {"limit": 100} | ({"cursor": cursor} if cursor else {})
            page = client.get("/v1/products", params=params).json()
            products += [item["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        categories = [c["name"] for c in client.get("/v1/categories").json()["items"]]
    catalog = Catalog(folder / "products.txt", folder / "stocked.txt", folder / "categories.txt")
    catalog.products.write_text("\n".join(products) + "\n")
    catalog.stocked.write_text("\n".join(stocked) + "\n")
    catalog.categories.write_text("\n".join(categories) + "\n")
    return catalog, headers["Authorization"]


def _seed(environment: Mapping[str, str], products: int) -> None:
    _check([*bazaar_command(), "seed", "--products", str(products)], environment)
    email, password = ADMIN
    command = [*bazaar_command(), "admin", "create", "--email", email]
    try:
        _check(command, environment, stdin=password + "\n")
    except StartError as error:  # a baseline from before the password was read from stdin
        if "--password" not in str(error):
            raise
        _check([*command, "--password", password], environment)


@dataclass
class Embedded(_OwnServer):
    """Every service in one `bazaar dev` process on SQLite, under `cores` of CPU, running
    `source`'s code."""

    source: Source = THIS
    settings: dict[str, str] = field(default_factory=dict)
    """Settings of its own (the tracing experiment's), beside its data dir."""
    group: str | None = None
    """Its CPU group's name, when several run this code at once (`bazaar-dev` otherwise)."""

    @property
    def environment(self) -> dict[str, str]:
        data = {"BAZAAR_DATA_DIR": str(self.folder / "data")}
        return _bazaar_environment(data | self.settings, self.source)

    def start(self, products: int) -> None:
        _seed(self.environment, products)
        group = "bazaar-dev" if self.source.src is None else f"bazaar-dev-{self.source.label}"
        group = self.group or group
        command = self.limited(group, [*bazaar_command(), "dev", "--port", str(self.port)])
        self.process = start_process("bazaar-dev", command, self.environment, self.folder)
        wait_ready(self.url)

    def use(self, counts: Mapping[str, int] | None = None) -> None:
        """One process serves everything: nothing to scale."""

    def park(self) -> None:
        """Nothing to scale down: idle, the process costs the machine little."""

    def metrics_urls(self) -> list[str]:
        return [self.url]

    relay_urls = metrics_urls

    def bazaar_programs(self) -> set[str]:
        """The processes that run Bazaar's code (of those `processes` names)."""
        return {"bazaar-dev"}


@dataclass
class Scaled:
    """`bazaar up`: HAProxy in front of `most` instances of catalog and of orders (each under
    its quota; `scale` chooses how many serve), one of the other services, a worker per
    service, PostgreSQL primary + replica + 2 shards, Redis, RabbitMQ, all on this machine,
    running `source`'s code."""

    folder: Path
    quotas: dict[str, float]
    most: int
    source: Source = THIS
    port: int = field(default_factory=free_port)
    stats_port: int = field(default_factory=free_port)
    run: RunRecord | None = None
    serving: dict[str, int] = field(default_factory=dict)
    """Instances of each scaled service in service (all `most` after the start)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    @property
    def environment(self) -> dict[str, str]:
        return _bazaar_environment({"BAZAAR_DATA_DIR": str(self.data_dir)}, self.source)

    def start(self, products: int) -> None:
        instances = f"catalog={self.most},orders={self.most},identity=1,payments=1,notifications=1"
        quota = ",".join(f"{service}={cores}" for service, cores in self.quotas.items())
        command = [*bazaar_command(), "up", "--detach", "--instances", instances]
        command += ["--cpu-quota", quota]
        command += ["--port", str(self.port), "--stats-port", str(self.stats_port)]
        _check(command, self.environment)
        folder = Folder(self.data_dir)
        self.run = RunRecord.load(folder.run)
        self.serving = dict.fromkeys(SCALED, self.most)
        _seed(_bazaar_environment(running_environment(folder), self.source), products)

    def scale(self, service: str, count: int) -> None:
        if self.serving.get(service) == count:
            return
        _check([*bazaar_command(), "scale", service, str(count)], self.environment, timeout=180)
        self.serving[service] = count

    def use(self, counts: Mapping[str, int] | None = None) -> None:
        """`counts` instances of catalog and orders in service (every one of a service left
        out), those scaled down first: they free the machine for those that start."""
        wanted = {
            service: min(self.most, (counts or {}).get(service, self.most)) for service in SCALED
        }
        for service, count in sorted(
            wanted.items(), key=lambda item: item[1] - self.serving.get(item[0], self.most)
        ):
            self.scale(service, count)

    def park(self) -> None:
        """One instance of each: while the other code is measured, an idle instance still
        costs the machine about 0.03 core."""
        self.use(dict.fromkeys(SCALED, 1))

    def metrics_urls(self) -> list[str]:
        processes = self.run.processes if self.run else []
        return [f"http://127.0.0.1:{p.port}" for p in processes]

    def relay_urls(self) -> list[str]:
        """The workers: the relays that publish the outbox run there."""
        processes = self.run.processes if self.run else []
        return [f"http://127.0.0.1:{p.port}" for p in processes if p.kind == "worker"]

    def bazaar_programs(self) -> set[str]:
        """The processes that run Bazaar's code: every API instance and worker, not the
        servers (PostgreSQL, Redis, RabbitMQ, HAProxy, the mail sink)."""
        return {p.name for p in self.run.processes} if self.run else set()

    def processes(self) -> dict[str, list[int]]:
        folder = Folder(self.data_dir)
        found: dict[str, list[int]] = {}
        supervisor = Supervisor(folder.layout)
        for program in supervisor.programs():
            if program.pid:
                found[program.name] = _tree(program.pid)
        state = State.load(folder.state)
        postgres = OwnPostgres(folder.root / "postgres", state, len(state.replica_ports))
        found["postgresql"] = sorted({pid for root in postgres.pids() for pid in _tree(root)})
        return found

    def stop(self) -> None:
        command = [*bazaar_command(), "down"]
        subprocess.run(command, env=self.environment, capture_output=True, timeout=300)
