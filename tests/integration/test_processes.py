"""The scaled topology as separate processes on the machine's PostgreSQL and RabbitMQ:
`bazaar serve` for identity, catalog (twice) and orders, `bazaar worker` for catalog, orders,
payments and notifications, driven over HTTP like a storefront would.

Each process is a real `bazaar` subprocess on a free port, against a fresh set of databases and
exchanges and queues under a prefix of this module's own; every wait is bounded, and every
process started here is stopped (SIGTERM, then SIGKILL) and its data dropped at the end.
"""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.engine import make_url

from bazaar.platform.keys import public_pem
from bazaar.platform.postgres import drop_database, service_url
from bazaar.platform.rabbitmq import RabbitMQBus
from bazaar.runtime.config import Settings
from bazaar.runtime.embedded import Runtime
from tests.e2e.checkout import create_product, eventually, place_order
from tests.integration.test_rabbitmq import BROKER_URL
from tests.plugin import FAST_ENV
from tests.postgres import SERVER_URL, fresh_database_url

BAZAAR = str(Path(sys.executable).with_name("bazaar"))
START_BOUND = 90.0
"""Seconds the whole topology may take to start (seven processes on two shared cores)."""
WORKERS = ("catalog", "orders", "payments", "notifications")
DATABASES = ("identity", "catalog", "payments", "notifications", "orders_0", "orders_1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def servers_answer() -> str | None:
    """Why the test cannot run here (PostgreSQL or RabbitMQ silent), or None."""
    url = make_url(SERVER_URL)
    for host, port, name in (
        (url.host or "127.0.0.1", url.port or 5432, "PostgreSQL"),
        (urlsplit(BROKER_URL).hostname, urlsplit(BROKER_URL).port or 5672, "RabbitMQ"),
    ):
        try:
            socket.create_connection((host, port), timeout=3).close()
        except OSError as error:
            return f"{name} at {host}:{port} does not answer ({error})"
    return None


@dataclass
class Topology:
    env: dict[str, str]
    logs: Path
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def start(self, name: str, *args: str, port: int | None = None, **env: str) -> None:
        if port is not None:
            self.ports[name] = port
        log = (self.logs / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen(
            [BAZAAR, *args],
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def run(self, *args: str, stdin: str | None = None, **env: str) -> None:
        done = subprocess.run(
            [BAZAAR, *args],
            env={**self.env, **env},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr

    def stop(self, name: str, timeout: float = 20.0) -> int:
        """SIGTERM, then SIGKILL after `timeout`; the exit code (negative: killed)."""
        process = self.processes.pop(name)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                return process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        return process.returncode

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name in list(self.processes):
            self.stop(name)

    def output(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]

    def wait_ready(self, deadline: float) -> None:
        with httpx.Client(timeout=2) as client:
            for name in self.ports:
                while True:
                    process = self.processes[name]
                    assert process.poll() is None, f"{name} exited:\n{self.output(name)}"
                    try:
                        if client.get(f"{self.url(name)}/readyz").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    assert time.monotonic() < deadline, f"{name} not ready:\n{self.output(name)}"
                    time.sleep(0.2)


def _key_pair() -> tuple[str, str]:
    """A token-signing key and its public key, as PEM."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return private.decode(), public_pem(key.public_key())


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    problem = servers_answer()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(f"SKIPPED, NOT TESTED: {problem}")
    data = tmp_path_factory.mktemp("topology")
    database_url = fresh_database_url()
    prefix = f"test-{uuid.uuid4().hex[:10]}"
    private_key, public_key = _key_pair()
    signs = {"BAZAAR_JWT_PRIVATE_KEY": private_key}  # only identity's processes (and the CLI)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BAZAAR_")},
        **FAST_ENV,
        "BAZAAR_DATA_DIR": str(data / "data"),
        "BAZAAR_DATABASE_URL": database_url,
        "BAZAAR_BROKER_URL": BROKER_URL,
        "BAZAAR_BROKER_PREFIX": prefix,
        "BAZAAR_JWT_PUBLIC_KEYS": public_key,
        "BAZAAR_LOG_LEVEL": "info",
    }
    topology = Topology(env, data)
    try:
        topology.run("migrate", **signs)
        topology.run(
            "admin", "create", "--email", "admin@example.com", stdin="adminpass1\n", **signs
        )
        topology.start(
            "identity", "serve", "identity", "--port", str(port := free_port()), port=port, **signs
        )
        topology.start("catalog", "serve", "catalog", "--port", str(port := free_port()), port=port)
        topology.start(
            "catalog_b", "serve", "catalog", "--port", str(port := free_port()), port=port
        )
        topology.start(
            "orders",
            "serve",
            "orders",
            "--port",
            str(port := free_port()),
            port=port,
            BAZAAR_CATALOG_URL=topology.url("catalog"),
        )
        topology.start(
            "orders_worker", "worker", "orders", "--port", str(port := free_port()), port=port
        )
        for service in ("catalog", "payments", "notifications"):
            topology.start(f"{service}_worker", "worker", service)
        topology.wait_ready(time.monotonic() + START_BOUND)
        yield topology
    finally:
        topology.stop_all()
        asyncio.run(_drop(database_url, prefix, data / "cleanup"))


async def _drop(database_url: str, prefix: str, data: Path) -> None:
    for name in DATABASES:
        await drop_database(make_url(service_url(database_url, name)))
    runtime = Runtime(Settings.from_env({"BAZAAR_DATA_DIR": str(data)}))
    consumers = {s.consumer for part in runtime.parts for s in part.subscriptions}
    await runtime.platform.close()
    await RabbitMQBus(BROKER_URL, prefix=prefix).delete_topology(consumers)


async def _login(client: httpx.AsyncClient, base: str, email: str, password: str) -> dict:
    response = await client.post(
        f"{base}/v1/auth/login", json={"email": email, "password": password}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def test_a_checkout_across_processes_is_confirmed(topology: Topology) -> None:
    identity, catalog, orders = (topology.url(n) for n in ("identity", "catalog", "orders"))
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            f"{identity}/v1/auth/register",
            json={"email": "ada@example.com", "password": "correct horse", "name": "Ada"},
        )
        assert response.status_code == 201, response.text
        customer = await _login(client, identity, "ada@example.com", "correct horse")
        admin = await _login(client, identity, "admin@example.com", "adminpass1")
        client.base_url = httpx.URL(catalog)
        product = await create_product(client, admin, stock=5, amount=2500)
        client.base_url = httpx.URL(orders)
        placed = await place_order(client, customer, [{"product_id": product["id"], "quantity": 2}])
        assert placed.status_code == 202, placed.text
        assert placed.json()["total"] == {"amount": 5000, "currency": "USD"}

        async def confirmed() -> dict | None:
            response = await client.get(f"/v1/orders/{placed.json()['id']}", headers=customer)
            assert response.status_code == 200, response.text
            order = response.json()
            assert order["status"] != "cancelled", order
            return order if order["status"] == "confirmed" else None

        await eventually(confirmed, within=30)

        async def reserved() -> bool:
            response = await client.get(f"{catalog}/v1/products/{product['id']}")
            return response.json()["stock"] == 3

        await eventually(reserved, within=5)


async def test_every_catalog_instance_serves_a_change_within_a_second(
    topology: Topology,
) -> None:
    a, b = topology.url("catalog"), topology.url("catalog_b")
    async with httpx.AsyncClient(timeout=10) as client:
        admin = await _login(client, topology.url("identity"), "admin@example.com", "adminpass1")
        client.base_url = httpx.URL(a)
        product = await create_product(client, admin, stock=1, amount=100)
        path = f"/v1/products/{product['id']}"
        assert (await client.get(f"{b}{path}")).json()["price"]["amount"] == 100  # B caches it
        changed = await client.patch(
            f"{a}{path}", json={"price": {"amount": 200, "currency": "USD"}}, headers=admin
        )
        assert changed.status_code == 200, changed.text

        async def b_serves_the_change() -> bool:
            return (await client.get(f"{b}{path}")).json()["price"]["amount"] == 200

        await eventually(b_serves_the_change, within=1.0)


async def test_a_worker_answers_health_and_metrics_on_its_port(topology: Topology) -> None:
    async with httpx.AsyncClient(base_url=topology.url("orders_worker"), timeout=5) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
        assert "bazaar" in (await client.get("/metrics")).text
        assert (await client.get("/v1/orders")).status_code == 404  # no routes on a worker


async def test_a_worker_stops_cleanly_on_sigterm(topology: Topology) -> None:
    """Last in this module: it stops a worker the other tests need."""
    name = "notifications_worker"
    assert topology.processes[name].poll() is None
    assert await asyncio.to_thread(topology.stop, name, 15.0) == 0
    assert "bazaar_stopped" in topology.output(name)


def test_serve_refuses_sqlite_naming_the_variable(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BAZAAR_")},
        "BAZAAR_DATA_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [BAZAAR, "serve", "catalog"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "BAZAAR_DATABASE_URL" in done.stderr
    assert "bazaar dev" in done.stderr
