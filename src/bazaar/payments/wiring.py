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
from bazaar.platform.postgres import service_url

SCHEMA = ServiceSchema("bazaar.payments", models.Base.metadata)


def provider_for(
    settings: PaymentsSettings, data_dir: Path, database_url: str | None = None
) -> PaymentProvider:
    """The provider the settings name. The sandbox keeps its records under the data dir, or
    with PostgreSQL in a database of its own there (`<base>_sandbox`), shared by every process
    as a real provider's are."""
    if settings.provider == "sandbox":
        if database_url is not None:
            return SandboxProvider(service_url(database_url, "sandbox"))
        return SandboxProvider(data_dir / "sandbox-provider.db")
    raise ValueError(f"unknown payment provider {settings.provider!r}")


def build(
    db: Database,
    settings: PaymentsSettings,
    data_dir: Path,
    idempotency: Idempotency,
    database_url: str | None = None,
) -> ServiceParts:
    provider = provider_for(settings, data_dir, database_url)
    return ServiceParts(
        "payments",
        SCHEMA,
        [db],
        api.create_router(db, provider, settings, idempotency),
        handlers.subscriptions(db, provider, settings),
        closers=[provider.close] if isinstance(provider, SandboxProvider) else [],
    )
