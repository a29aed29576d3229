"""The checkout journey for Locust: signed-in customers placing orders one after another and
polling each until it settles (`bazaar bench` runs it headless). With BENCH_USER_RATE set,
each customer places at most that many orders a second (a fixed load, below the peak)."""

import os

from locust import constant, constant_throughput, task
from shopper import Shopper

USER_RATE = float(os.environ.get("BENCH_USER_RATE") or 0)


class Customer(Shopper):
    wait_time = constant_throughput(USER_RATE) if USER_RATE else constant(0)

    @task
    def buy(self) -> None:
        self.checkout()
