"""Orders on an idle shop for Locust: one signed-in customer places an order, polls it until it
settles (as the checkout journey does, often: BENCH_POLL_SECONDS), rests BENCH_PAUSE_SECONDS,
and places the next; so each order's time from placed to settled is the saga's own, with no
other order in its way. The first order warms the path up and is not counted."""

import os

from locust import constant, task
from shopper import Shopper

PAUSE_SECONDS = float(os.environ.get("BENCH_PAUSE_SECONDS") or 0.2)


class IdleCustomer(Shopper):
    wait_time = constant(PAUSE_SECONDS)

    def on_start(self) -> None:
        super().on_start()
        self.checkout(record=False)

    @task
    def buy(self) -> None:
        self.checkout()
