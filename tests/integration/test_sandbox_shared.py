"""The payment sandbox on PostgreSQL is one store for every process, as a real provider is: a
worker that captured a charge and an API pod that refunds it share no data folder (two pods on
Kubernetes), yet the refund finds the charge."""

import uuid
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from bazaar.payments.models import Payment
from bazaar.payments.sandbox import SandboxProvider
from bazaar.payments.wiring import provider_for
from bazaar.platform.auth import ADMIN, TokenIssuer
from bazaar.platform.bus import RetryPolicy, deliver
from bazaar.platform.keys import public_pem
from bazaar.runtime.config import ProcessKind, Settings
from bazaar.runtime.embedded import Runtime
from tests.payments.test_service import stock_reserved
from tests.plugin import FAST_ENV
from tests.postgres import drop_databases, fresh_database_url, require_server


async def test_a_charge_captured_by_one_pod_is_refunded_by_another(tmp_path: Path) -> None:
    await require_server()
    identity_key = Ed25519PrivateKey.generate()
    shared_url = fresh_database_url()
    shared = {
        **FAST_ENV,
        "BAZAAR_DATABASE_URL": shared_url,
        "BAZAAR_JWT_PUBLIC_KEYS": public_pem(identity_key.public_key()),
    }

    def pod(kind: ProcessKind, folder: str) -> Runtime:
        environment = {**shared, "BAZAAR_DATA_DIR": str(tmp_path / folder)}
        return Runtime(Settings.from_env(environment, kind=kind), services=["payments"])

    worker, api = pod(ProcessKind.WORKER, "worker-pod"), pod(ProcessKind.SERVE, "api-pod")
    await worker.start()
    await api.start()
    try:
        [capture] = [s for s in worker._subscribed if s.event_type == "stock.reserved"]
        order_id = str(uuid.uuid4())
        assert await deliver(capture, stock_reserved(order_id), RetryPolicy(attempts=1))
        payments_db = worker.platform.databases["payments"]
        provider = provider_for(worker.settings.payments, tmp_path / "dashboard", payments_db)
        assert isinstance(provider, SandboxProvider)  # the provider's dashboard, as it were
        [charge] = (await provider.charges()).values()
        assert charge.outcome == "succeeded"

        token = TokenIssuer(identity_key, 60).issue("admin-1", ADMIN)
        transport = httpx.ASGITransport(app=api.app())
        async with httpx.AsyncClient(transport=transport, base_url="http://payments") as client:
            headers = {"Authorization": f"Bearer {token}"}
            payment_id = await _payment_of(worker, order_id)
            refunded = await client.post(
                f"/v1/payments/{payment_id}/refund",
                headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
            )
        assert refunded.status_code == 200, refunded.text
        assert refunded.json()["status"] == "refunded"
        [refund] = (await provider.refunds()).values()
        assert refund.charge_id == charge.id
    finally:
        await provider.close()
        await api.stop()
        await worker.stop()
        await drop_databases(worker)
    assert not (tmp_path / "api-pod" / "sandbox-provider.db").exists()


async def _payment_of(runtime: Runtime, order_id: str) -> str:
    async with runtime.platform.databases["payments"].read(fresh=True) as session:
        return (await session.scalars(select(Payment.id).where(Payment.order_id == order_id))).one()
