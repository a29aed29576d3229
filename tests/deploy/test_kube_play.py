"""The manifests really run: `podman kube play` starts the `local` overlay's pods from the built
image against the machine's PostgreSQL, Redis and RabbitMQ (reached as a cloud's managed
services would be), they become ready, and a checkout goes through them: sign up, add to the
cart, order, confirmed, email. Then they are torn down.

The overlay's fixed names are replaced by names of this run's own (its databases, its queues,
the port of the mail sink the test runs), so that a run leaves nothing behind on the servers.
"""

import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy.engine import make_url

from bazaar.platform.postgres import drop_database
from bazaar.platform.rabbitmq import RabbitMQBus
from bazaar.runtime.embedded import Runtime
from bazaar.runtime.processes import SERVICES
from tests.deploy.conftest import REPOSITORY, podman
from tests.e2e.checkout import ADDRESS, create_product, eventually
from tests.integration.test_rabbitmq import BROKER_URL
from tests.notifications.test_mailer import Sink
from tests.plugin import settings_for
from tests.postgres import SERVER_URL, require_server

OVERLAY = REPOSITORY / "deploy" / "k8s" / "overlays" / "local"
API_PORTS = {service: 8101 + i for i, service in enumerate(SERVICES)}
WORKER_PORTS = {service: 9101 + i for i, service in enumerate(SERVICES)}
READY_SECONDS = 180


@dataclass
class Shop:
    manifest: Path
    database_url: str
    image: str
    seconds_to_ready: float

    def api(self, service: str) -> str:
        return f"http://127.0.0.1:{API_PORTS[service]}"


def _render(image: str, database_url: str, prefix: str, smtp_port: int) -> str:
    done = subprocess.run(
        ["kubectl", "kustomize", str(OVERLAY)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    documents = [d for d in yaml.safe_load_all(done.stdout) if d]
    for document in documents:
        if document["kind"] == "ConfigMap" and document["metadata"]["name"].startswith(
            "bazaar-connections"
        ):
            document["data"] |= {
                "BAZAAR_DATABASE_URL": database_url,
                "BAZAAR_BROKER_PREFIX": prefix,
                "BAZAAR_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
            }
        spec = document.get("spec", {})
        pod = spec.get("template", {}).get("spec", spec)
        for container in pod.get("containers", []):
            container["image"] = image
    return yaml.safe_dump_all(documents)


@asynccontextmanager
async def played(image: str, smtp_port: int, folder: Path) -> AsyncIterator[Shop]:
    """The local overlay, played until the block ends, every process ready, then torn down."""
    await require_server()
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl (with kustomize) is needed to render the manifests")
    busy = [port for port in [*API_PORTS.values(), *WORKER_PORTS.values()] if _answers(port)]
    assert not busy, f"the local overlay's ports are taken: {busy}"
    run = uuid.uuid4().hex[:10]
    database_url = make_url(SERVER_URL).set(database=f"bazaar_kube_{run}")
    url = database_url.render_as_string(hide_password=False)
    prefix = f"test-kube-{run}"
    manifest = folder / "bazaar-local.yaml"
    manifest.write_text(_render(image, url, prefix, smtp_port))
    began = time.monotonic()
    played = podman("kube", "play", str(manifest), timeout=300)
    try:
        assert played.returncode == 0, played.stderr
        async with httpx.AsyncClient(timeout=5) as client:

            async def every_process_ready() -> bool:
                for port in [*API_PORTS.values(), *WORKER_PORTS.values()]:
                    try:
                        ready = await client.get(f"http://127.0.0.1:{port}/readyz")
                    except httpx.TransportError:
                        return False
                    if ready.status_code != 200:
                        return False
                return True

            try:
                await eventually(every_process_ready, within=READY_SECONDS)
            except TimeoutError:
                pytest.fail(f"the pods did not become ready:\n{_logs()}")
        yield Shop(manifest, url, image, time.monotonic() - began)
    finally:
        podman("kube", "down", str(manifest), timeout=300)
        for pod in _pod_names(manifest):  # also what a play that failed half-way started
            podman("pod", "rm", "--force", "--ignore", pod)
        others = ["orders_0", "orders_1", "payments_sandbox"]
        for service in [s for s in SERVICES if s != "orders"] + others:
            await drop_database(make_url(f"{url}_{service}"))
        runtime = Runtime(settings_for(folder / "cleanup"))
        consumers = {s.consumer for part in runtime.parts for s in part.subscriptions}
        await runtime.platform.close()
        await RabbitMQBus(BROKER_URL, prefix=prefix).delete_topology(consumers)


def _pod_names(manifest: Path) -> list[str]:
    """The pods `podman kube play` makes of `manifest`: `<name>-pod-0` of a Deployment."""
    names = []
    for document in yaml.safe_load_all(manifest.read_text()):
        if document and document["kind"] == "Deployment":
            names.append(f"{document['metadata']['name']}-pod-0")
        elif document and document["kind"] == "Pod":
            names.append(document["metadata"]["name"])
    return names


def _answers(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5)
    except httpx.TransportError:
        return False
    return True


def _logs() -> str:
    names = podman("ps", "-a", "--format", "{{.Names}}").stdout.split()
    return "\n".join(
        f"--- {name}\n{podman('logs', '--tail', '15', name).stderr[-1500:]}" for name in names
    )


async def test_the_local_overlay_plays_and_a_checkout_goes_through_its_pods(
    image: str, smtp_sink: tuple[Sink, int], tmp_path: Path
) -> None:
    sink, smtp_port = smtp_sink
    async with played(image, smtp_port, tmp_path) as shop:
        await _checkout(shop, sink)
        print(f"podman kube play to every process ready: {shop.seconds_to_ready:.1f} s")


async def _checkout(shop: Shop, sink: Sink) -> None:
    created = podman(
        "run", "--rm", "-i", "--network", "host", "--read-only", "--tmpfs", "/var/lib/bazaar",
        "-e", f"BAZAAR_DATABASE_URL={shop.database_url}", "-e", "BAZAAR_LOG_LEVEL=warning",
        shop.image, "admin", "create", "--email", "admin@example.com",
        stdin="admin pass 1\n",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    async with httpx.AsyncClient(timeout=10) as client:

        async def login(email: str, password: str) -> dict[str, str]:
            body = {"email": email, "password": password}
            answer = await client.post(f"{shop.api('identity')}/v1/auth/login", json=body)
            assert answer.status_code == 200, answer.text
            return {"Authorization": f"Bearer {answer.json()['access_token']}"}

        signed_up = await client.post(
            f"{shop.api('identity')}/v1/auth/register",
            json={"email": "ada@example.com", "password": "correct horse", "name": "Ada"},
        )
        assert signed_up.status_code == 201, signed_up.text
        customer = await login("ada@example.com", "correct horse")
        admin = await login("admin@example.com", "admin pass 1")
        client.base_url = httpx.URL(shop.api("catalog"))
        product = await create_product(client, admin, stock=3, amount=1250)
        client.base_url = httpx.URL("")
        orders = shop.api("orders")
        cart = await client.put(
            f"{orders}/v1/cart/items/{product['id']}", json={"quantity": 2}, headers=customer
        )
        assert cart.status_code == 200, cart.text
        placed = await client.post(
            f"{orders}/v1/orders",
            json={"payment_method": "pm_card_visa", "shipping_address": ADDRESS},
            headers={**customer, "Idempotency-Key": uuid.uuid4().hex},
        )
        assert placed.status_code == 202, placed.text
        order_id = placed.json()["id"]

        async def confirmed() -> dict | None:
            answer = await client.get(f"{orders}/v1/orders/{order_id}", headers=customer)
            order = answer.json()
            assert order["status"] != "cancelled", order
            return order if order["status"] == "confirmed" else None

        order = await eventually(confirmed, within=30)
        assert order["total"] == {"amount": 2500, "currency": "USD"}
        payment = await client.get(
            f"{shop.api('payments')}/v1/payments/{order['payment_id']}", headers=customer
        )
        assert payment.json()["status"] == "succeeded"

    async def emailed() -> bool:
        return any(order_id.encode() in content for _f, _t, content in sink.received)

    await eventually(emailed, within=30)
