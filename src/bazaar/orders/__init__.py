"""Orders: carts and orders, split across shards by customer; drives the checkout saga."""
