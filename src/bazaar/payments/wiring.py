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

SCHEMA = ServiceSchema("bazaar.payments", models.Base.metadata)


def provider_for(settings: PaymentsSettings, data_dir: Path) -> PaymentProvider:
    """The provider the settings name; the sandbox keeps its records under the data dir."""
    if settings.provider == "sandbox":
        return SandboxProvider(data_dir / "sandbox-provider.db")
    raise ValueError(f"unknown payment provider {settings.provider!r}")


def build(
    db: Database,
    settings: PaymentsSettings,
    data_dir: Path,
    idempotency: Idempotency,
) -> ServiceParts:
    provider = provider_for(settings, data_dir)
    return ServiceParts(
        "payments",
        SCHEMA,
        [db],
        api.create_router(db, provider, settings, idempotency),
        handlers.subscriptions(db, provider, settings),
    )
