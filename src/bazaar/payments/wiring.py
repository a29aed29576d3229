"""Payments' parts for a process: routes, event handlers, schema and the provider."""

from pathlib import Path

from bazaar.payments import api, handlers, models
from bazaar.payments.provider import PaymentProvider
from bazaar.payments.sandbox import SandboxProvider
from bazaar.payments.settings import PaymentsSettings
from bazaar.platform.db import Database
from bazaar.platform.idempotency import Idempotency
from bazaar.platform.migrations import ServiceSchema
from bazaar.platform.parts import ServiceParts
from bazaar.platform.web import service_router

SCHEMA = ServiceSchema("bazaar.payments", models.Base.metadata)


def provider_for(
    settings: PaymentsSettings, data_dir: Path, db: Database, pooler: str | None = None
) -> PaymentProvider:
    """The provider the settings name. The sandbox keeps its records under the data dir, or
    with PostgreSQL in a database of its own beside payments' (`sandbox_url`, reached through
    `pooler` as `db` is), shared by every process as a real provider's are."""
    if settings.provider == "sandbox":
        if db.dialect == "postgresql":
            return SandboxProvider(sandbox_url(db), pooler=pooler)
        return SandboxProvider(data_dir / "sandbox-provider.db")
    raise ValueError(f"unknown payment provider {settings.provider!r}")


def sandbox_url(db: Database) -> str:
    """The sandbox's database beside payments' `db`: `bazaar_payments` gives
    `bazaar_payments_sandbox`."""
    url = db.primary.url
    return url.set(database=f"{url.database}_sandbox").render_as_string(hide_password=False)


def build(
    db: Database,
    settings: PaymentsSettings,
    data_dir: Path,
    idempotency: Idempotency,
    pooler: str | None = None,
) -> ServiceParts:
    provider = provider_for(settings, data_dir, db, pooler)
    return ServiceParts(
        "payments",
        SCHEMA,
        [db],
        service_router(api.CONTROLLERS, api.dependencies(db, provider, settings, idempotency)),
        subscriptions=handlers.subscriptions(db, provider, settings),
        closers=[provider.close] if isinstance(provider, SandboxProvider) else [],
    )
