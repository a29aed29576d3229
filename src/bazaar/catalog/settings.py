"""Catalog's settings."""

from dataclasses import dataclass

from bazaar.platform.cache import STALENESS_BOUND
from bazaar.platform.settings import Env


@dataclass(frozen=True)
class CatalogSettings:
    product_cache_seconds: float
    """How long a product page stays in the response cache: at most the staleness bound."""
    listing_cache_seconds: float
    """How long a listing (a page of `GET /v1/products`) stays in the response cache: at most
    the staleness bound; 0 reads every listing where reads go (a replica if any)."""
    product_max_age: int
    """`Cache-Control: max-age` of a product page and a listing, for browsers and CDNs."""
    import_batch_size: int
    import_poll_interval: float
    import_lease_seconds: float
    """A running job whose worker has not reported for this long is taken over by another."""
    import_max_errors: int
    """Bad rows reported one by one in a job's result; more are only counted."""

    @classmethod
    def from_env(cls, env: Env) -> "CatalogSettings":
        return cls(
            product_cache_seconds=env.number(
                "PRODUCT_CACHE_SECONDS", STALENESS_BOUND, maximum=STALENESS_BOUND
            ),
            listing_cache_seconds=env.number(
                "LISTING_CACHE_SECONDS", STALENESS_BOUND, maximum=STALENESS_BOUND
            ),
            product_max_age=env.integer("PRODUCT_MAX_AGE", 1, minimum=0, maximum=3600),
            import_batch_size=env.integer("IMPORT_BATCH_SIZE", 1000, minimum=1, maximum=50_000),
            import_poll_interval=env.number("IMPORT_POLL_INTERVAL", 0.5, minimum=0.01),
            import_lease_seconds=env.number("IMPORT_LEASE_SECONDS", 15.0, minimum=1.0),
            import_max_errors=env.integer("IMPORT_MAX_ERRORS", 1000, minimum=1),
        )
