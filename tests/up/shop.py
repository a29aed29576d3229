"""A storefront's steps through HAProxy, synchronous (the topology runs in other processes):
customers, an admin, products, orders; and a stream of idempotent checkouts."""

import threading
import time
import uuid
from dataclasses import dataclass, field

import httpx

from chaos.shop import ADDRESS, PASSWORD, Customer, login, sign_up
from tests.up.running import Running, wait_for

RETRIED = {503, 409, -1}
"""Sent again with the same Idempotency-Key: a dependency or instance unavailable, the first
request with that key still in flight, no answer at all (-1)."""
KEY_BOUND = 30.0
"""The longest one checkout is retried before the stream counts it failed."""


def customer(client: httpx.Client, name: str = "Ada") -> Customer:
    """A new customer, logged in."""
    return sign_up(client, name)


def admin(up: Running, client: httpx.Client) -> dict[str, str]:
    """`bazaar admin create` in the running topology's databases (found by itself), then
    logged in."""
    email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    created = up.bazaar("admin", "create", "--email", email, stdin=PASSWORD + "\n")
    assert created.returncode == 0, created.stdout + created.stderr
    return login(client, email)


def listed_ids(up: Running) -> list[str]:
    items = httpx.get(f"{up.base}/v1/products", timeout=5).json()["items"]
    assert items
    return [item["id"] for item in items]


def product_ids(up: Running) -> list[str]:
    """Seeded into the running topology's catalog (with the settings `up` wrote down)."""
    seeded = up.bazaar("seed", "--products", "5", environ=up.settings(), timeout=120)
    assert seeded.returncode == 0, seeded.stderr

    def listed() -> list[str]:
        items = httpx.get(f"{up.base}/v1/products?limit=5", timeout=5).json()["items"]
        return [item["id"] for item in items] if len(items) == 5 else []

    return wait_for(listed, 10, "the seeded products listed")


def order_body(product_id: str | None, payment_method: str, quantity: int = 1) -> dict:
    body: dict = {"payment_method": payment_method, "shipping_address": ADDRESS}
    if product_id is not None:
        body["items"] = [{"product_id": product_id, "quantity": quantity}]
    return body


def settled(client: httpx.Client, headers: dict[str, str], order_id: str, within: float) -> dict:
    """The order once the saga moved it out of `pending`."""

    def moved() -> dict | None:
        answer = client.get(f"/v1/orders/{order_id}", headers=headers)
        assert answer.status_code == 200, answer.text
        return answer.json() if answer.json()["status"] != "pending" else None

    return wait_for(moved, within, f"order {order_id} settled")


def stock_of(client: httpx.Client, product_id: str) -> int:
    answer = client.get(f"/v1/products/{product_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()["stock"]


def stock_settles_at(client: httpx.Client, product_id: str, expected: int, within: float) -> None:
    """The product's stock becomes `expected` within `within` seconds (a cancelled order's
    units come back when catalog handles its `order.cancelled`, after the order shows
    cancelled), and stays there a moment: no release is counted twice."""
    seen: list[int] = []

    def settled() -> bool:
        seen.append(stock_of(client, product_id))
        return seen[-1] == expected

    try:
        wait_for(settled, within, f"the stock at {expected}")
    except AssertionError:
        raise AssertionError(f"the stock is {seen[-1]}, not {expected}, after {within} s") from None
    print(f"stock at {expected} after {len(seen)} reads (first {seen[0]})")
    time.sleep(0.5)
    assert stock_of(client, product_id) == expected


@dataclass
class Shopper:
    customer: Customer
    placed: dict[str, str] = field(default_factory=dict)
    """Idempotency-Key -> the id of the order it placed."""
    declined: set[str] = field(default_factory=set)
    """The keys paid with a card the sandbox declines."""


class Checkouts:
    """Shoppers placing one-unit orders of a product through HAProxy, each one after another
    until stopped; every fourth paid with a declined card. Each order has its own
    Idempotency-Key and is sent again with it after a RETRIED answer until it is accepted
    (202, or 200/202 replayed). Every answer is counted; any other is a failure."""

    def __init__(self, base: str, shoppers: list[Shopper], product_id: str) -> None:
        self.base, self.shoppers, self.product_id = base, shoppers, product_id
        self.answers: dict[int, int] = {}
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._shop, args=(shopper,), daemon=True)
            for shopper in shoppers
        ]

    def _count(self, status: int) -> None:
        with self._lock:
            self.answers[status] = self.answers.get(status, 0) + 1

    def _shop(self, shopper: Shopper) -> None:
        with httpx.Client(base_url=self.base, timeout=10) as client:
            while not self._stop.is_set():
                key = uuid.uuid4().hex
                method = "pm_card_declined" if len(shopper.placed) % 4 == 3 else "pm_card_visa"
                if method == "pm_card_declined":
                    shopper.declined.add(key)
                order_id = self._place(client, shopper, key, order_body(self.product_id, method))
                if order_id is None:
                    return
                shopper.placed[key] = order_id

    def _place(self, client: httpx.Client, shopper: Shopper, key: str, body: dict) -> str | None:
        headers = {**shopper.customer.headers, "Idempotency-Key": key}
        deadline = time.monotonic() + KEY_BOUND
        while time.monotonic() < deadline:
            try:
                answer = client.post("/v1/orders", json=body, headers=headers)
                status = answer.status_code
            except httpx.HTTPError as error:
                status = -1
                print("checkout attempt failed:", type(error).__name__, error)
            self._count(status)
            if status in (200, 202):
                return answer.json()["id"]
            if status not in RETRIED:
                self.failures.append(f"{key}: {status} {answer.text[:300]}")
                return None
            time.sleep(0.1)
        self.failures.append(f"{key}: not accepted within {KEY_BOUND} s")
        return None

    def __enter__(self) -> "Checkouts":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=KEY_BOUND + 15)
