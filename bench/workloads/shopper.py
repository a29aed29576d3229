"""What a customer does, for the Locust journeys (checkout.py, mixed.py): sign up and in, place
an order, and poll it until it settles.

The run's data comes in environment variables that `bazaar bench` sets: BENCH_PRODUCTS and
BENCH_STOCKED (files of product ids: the catalog, and products with stock enough for any
run), BENCH_CATEGORIES, BENCH_CUSTOMERS (signed-in customers: `email password token` lines,
made before the run by bench/customers.py), BENCH_POLL_SECONDS, BENCH_SETTLE_TIMEOUT and
BENCH_PAUSE_SECONDS (settle_idle.py's rest between orders).
The time from placed to settled of every order goes to the JSON file BENCH_SETTLE_FILE when
the run stops, so that Locust's own request statistics hold only HTTP requests.
"""

import itertools
import json
import os
import random
import time
import uuid
from pathlib import Path

import gevent
from locust import FastHttpUser, events

SETTLED = ("confirmed", "cancelled")
POLL_SECONDS = float(os.environ.get("BENCH_POLL_SECONDS", "0.1"))
SETTLE_TIMEOUT = float(os.environ.get("BENCH_SETTLE_TIMEOUT", "10"))
ADDRESS = {
    "name": "Bench Shopper",
    "line1": "1 Main St",
    "city": "Springfield",
    "postal_code": "12345",
    "country": "US",
}
PASSWORD = "bench-password-1"
SETTLE_TIMES: list[float] = []
"""Seconds from placed to settled, of every order that settled."""
UNSETTLED: list[str] = []
"""Orders still pending after BENCH_SETTLE_TIMEOUT."""


@events.test_stop.add_listener
def _write_settle_times(**_kwargs: object) -> None:
    path = os.environ.get("BENCH_SETTLE_FILE")
    if path:
        Path(path).write_text(json.dumps({"settled": SETTLE_TIMES, "unsettled": UNSETTLED}))


def _ids(variable: str) -> list[str]:
    path = os.environ.get(variable)
    return Path(path).read_text().split() if path else []


def _ids_lines(variable: str) -> list[str]:
    path = os.environ.get(variable)
    return [line for line in Path(path).read_text().splitlines() if line] if path else []


CUSTOMERS = [line.split() for line in _ids_lines("BENCH_CUSTOMERS")]
_NEXT_CUSTOMER = itertools.count()
PRODUCTS = _ids("BENCH_PRODUCTS")
STOCKED = _ids("BENCH_STOCKED")
CATEGORIES = _ids("BENCH_CATEGORIES")
SEARCH_WORDS = ("lamp", "kettle", "mug", "chair", "eco", "classic", "torch", "puzzle")


def popular_product() -> str:
    """A hot fifth of the catalog takes 80% of the views (as in workloads/catalog.lua)."""
    if random.random() < 0.8:
        return random.choice(PRODUCTS[: max(1, len(PRODUCTS) // 5)])
    return random.choice(PRODUCTS)


class Shopper(FastHttpUser):
    """A signed-in customer: one of BENCH_CUSTOMERS when there are enough, else one that signs
    up now."""

    abstract = True
    token = ""

    def on_start(self) -> None:
        number = next(_NEXT_CUSTOMER)
        if number < len(CUSTOMERS):
            self.email, _password, self.token = CUSTOMERS[number]
            return
        email = f"bench-{uuid.uuid4().hex[:16]}@example.com"
        self.client.post(
            "/v1/auth/register",
            json={"email": email, "password": PASSWORD, "name": "Bench Shopper"},
            name="POST /v1/auth/register",
        )
        self.email = email
        self.log_in()

    def log_in(self) -> None:
        answer = self.client.post(
            "/v1/auth/login",
            json={"email": self.email, "password": PASSWORD},
            name="POST /v1/auth/login",
        )
        if answer.status_code == 200:
            self.token = answer.json()["access_token"]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def place_order(self, items: list[dict] | None) -> str | None:
        """POST /v1/orders (the cart when `items` is None); the order's id, or None."""
        body: dict = {"payment_method": "pm_card_visa", "shipping_address": ADDRESS}
        if items is not None:
            body["items"] = items
        headers = {**self.auth, "Idempotency-Key": uuid.uuid4().hex}
        with self.client.post(
            "/v1/orders", json=body, headers=headers, name="POST /v1/orders", catch_response=True
        ) as answer:
            if answer.status_code != 202:
                answer.failure(f"{answer.status_code}: {answer.text[:200]}")
                return None
            return answer.json()["id"]

    def wait_settled(self, order_id: str, record: bool = True) -> None:
        """Poll the order until it is confirmed or cancelled, and note how long that took
        (unless `record` is false: a warm-up)."""
        placed = time.perf_counter()
        while True:
            gevent.sleep(POLL_SECONDS)
            answer = self.client.get(
                f"/v1/orders/{order_id}", headers=self.auth, name="GET /v1/orders/{id}"
            )
            status = answer.json().get("status") if answer.status_code == 200 else None
            elapsed = time.perf_counter() - placed
            if status in SETTLED or elapsed > SETTLE_TIMEOUT:
                break
        if not record:
            return
        if status in SETTLED:
            SETTLE_TIMES.append(elapsed)
        else:
            UNSETTLED.append(order_id)

    def checkout(self, record: bool = True) -> None:
        item = {"product_id": random.choice(STOCKED), "quantity": 1}
        order_id = self.place_order([item])
        if order_id is not None:
            self.wait_settled(order_id, record)
