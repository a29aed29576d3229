"""Orders: carts and orders, split across shards by customer; drives the checkout saga."""

from bazaar.platform.service import ServiceDefinition

DEFINITION = ServiceDefinition(
    name="orders", routes=("/v1/cart", "/v1/orders", "/v1/admin/orders"), database=None
)
"""Orders keep no database of their own: their rows are spread over the order shards."""
