"""The single place where services are wired to the platform's adapters and to each other."""

from bazaar.catalog import wiring as catalog
from bazaar.identity import wiring as identity
from bazaar.notifications import wiring as notifications
from bazaar.orders import wiring as orders
from bazaar.orders.prices import CatalogPrices
from bazaar.payments import wiring as payments
from bazaar.platform.auth import TokenIssuer
from bazaar.platform.parts import ServiceParts
from bazaar.runtime.catalog_prices import EmbeddedCatalogPrices
from bazaar.runtime.config import Settings
from bazaar.runtime.platform import Platform


def assemble(
    platform: Platform, settings: Settings, prices: CatalogPrices | None = None
) -> list[ServiceParts]:
    """Every service's parts (identity's only where the signing key is at hand); orders quotes
    through `prices`, by default on catalog's own database (both in one process)."""
    parts = [
        payments.build(
            platform.databases["payments"],
            settings.payments,
            platform.settings.data_dir,
            platform.idempotency,
            platform.settings.database_pooler,
        ),
        catalog.build(
            platform.databases["catalog"],
            platform.cache,
            settings.catalog,
            edge=platform.response_cache,
        ),
        notifications.build(
            platform.databases["notifications"],
            settings.notifications,
            smtp_url=platform.settings.smtp_url,
            data_dir=platform.settings.data_dir,
        ),
        orders.build(
            platform.orders,
            prices or EmbeddedCatalogPrices(platform.databases["catalog"]),
            platform.idempotency,
        ),
    ]
    if platform.signing_key is not None:
        issuer = TokenIssuer(platform.signing_key, settings.identity.access_token_ttl)
        identity_db = platform.databases["identity"]
        parts.insert(
            0,
            identity.build(
                identity_db, issuer, platform.limiter, settings.identity, platform.public_keys
            ),
        )
    return parts
