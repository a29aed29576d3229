"""Orders' settings: where it asks the catalog for prices when the catalog runs in another
process, how long it waits for the answer, and how long it keeps one for showing carts."""

from dataclasses import dataclass

from bazaar.platform.cache import STALENESS_BOUND
from bazaar.platform.settings import Env


@dataclass(frozen=True)
class OrdersSettings:
    catalog_url: str | None
    """The base URL of the catalog service, or of its load balancer (`BAZAAR_CATALOG_URL`):
    needed by an orders API that runs without catalog in its process."""
    catalog_timeout: float
    """The longest orders waits for the catalog's answer before it answers 503
    (`BAZAAR_CATALOG_TIMEOUT`)."""
    cart_quote_seconds: float
    """How long such an orders API keeps the catalog's quote of a product for showing carts
    (`BAZAAR_CART_QUOTE_SECONDS`): at most the staleness bound, 0 asks at every cart. An order
    is always placed at a price the catalog is asked for."""

    @classmethod
    def from_env(cls, env: Env) -> "OrdersSettings":
        catalog_url = env.url("CATALOG_URL", ("http", "https"))
        return cls(
            catalog_url=catalog_url.rstrip("/") if catalog_url else None,
            catalog_timeout=env.number("CATALOG_TIMEOUT", 2.0, minimum=0.05),
            cart_quote_seconds=env.number(
                "CART_QUOTE_SECONDS", STALENESS_BOUND, maximum=STALENESS_BOUND
            ),
        )
