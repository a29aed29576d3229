"""What a run of `bazaar bench` measures, and for how long: the options of the command, as one
frozen value that results.json records."""

from dataclasses import dataclass

COMPARED = (
    "product",
    "browse",
    "settle-idle",
    "order-read",
    "cart-read",
    "notifications-read",
    "product-create",
    "checkout",
    "checkout-half",
    "mixed",
)
"""The workloads whose peaks a run measures (on the baseline too, when there is one), in
order."""
TRACED = ("product", "checkout")
"""The workloads the tracing experiment measures."""
TRACING_SETTINGS = (("off", None), ("1%", 0.01), ("100%", 1.0))
"""The tracing experiment's settings: a name, and the share of traces kept (None: off)."""


@dataclass(frozen=True)
class Plan:
    modes: tuple[str, ...] = ("embedded", "scaled")
    seconds: float = 10.0
    """Each request-rate measurement (wrk)."""
    journey_seconds: float = 20.0
    """Each journey measurement (Locust)."""
    products: int = 10_000
    instances: tuple[int, ...] = (1, 2, 4, 8)
    embedded_quota: float = 1.0
    catalog_quota: float = 0.25
    orders_quota: float = 0.1
    fractions: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
    connections: int = 64
    paced_connections: int = 256
    """Connections for a fixed rate: each waits a random pause between its requests, so more
    connections keep the server's latency a small part of each one's cycle and the rate
    achieved near the rate offered."""
    checkout_users_per_instance: int = 6
    mixed_users: int = 40
    warm_seconds: float = 2.0
    profile: bool = True
    """Sample every Bazaar process with py-spy under the product and checkout workloads."""
    writer_connections: int = 16
    """product-create's connections: one admin's writes reach their peak with far fewer
    than 64, and 64 would queue each past the API's 1 s budget (503 with Retry-After)."""
    readers: int = 32
    """Customers whose orders, carts and notifications the read workloads read."""
    reader_orders: int = 3
    cart_items: int = 3
    idle_pause_seconds: float = 0.2
    """settle-idle's rest between an order settling and the next."""
    idle_poll_seconds: float = 0.01
    """How often settle-idle polls an order: the resolution of its settle times (the
    journeys under load poll every 0.1 s)."""
    baseline: str | None = None
    """A commit measured beside this code in the same run."""
    rounds: int = 2
    """How many times each workload is measured on each code, with a baseline, and on each
    setting of the tracing experiment."""
    tracing: bool = True
    """Measure what tracing costs (bench/tracing_cost.py): the cached page and the checkout on
    `bazaar dev` with tracing off, at 1% and at 100%."""

    @classmethod
    def quick(cls) -> "Plan":
        """About a minute: every workload once on `bazaar dev`, short."""
        return cls(
            modes=("embedded",),
            seconds=2.0,
            journey_seconds=5.0,
            products=500,
            fractions=(0.7,),
            checkout_users_per_instance=4,
            mixed_users=10,
            warm_seconds=1.0,
            profile=False,
            readers=8,
            rounds=1,
            tracing=False,
        )

    def steps(self) -> int:
        """How many steps `run_mode` reports, for the progress bar."""
        each = 2 * self.rounds if self.baseline else 1  # measurements of a compared workload
        count = 0
        for mode in self.modes:
            count += 3 + len(self.fractions)  # start, readers, hello, product at fractions
            compared = len(COMPARED)
            if mode == "scaled":
                count += 2 * len(self.instances)  # catalog and checkout scaling
                if not self.baseline:  # checkout's peak is its scaling's best point
                    compared -= 1
            count += each * compared
        if self.tracing:
            count += 1 + len(TRACED) * len(TRACING_SETTINGS) * self.rounds
        return count + (2 * len(self.modes) if self.profile else 0)
