"""Signed-in customers for the journeys, made before a measurement starts: signing up is an
argon2 hash and signing in a verification, both made slow on purpose, so a crowd of simulated
users all signing up in the first second would measure the sign-up, not the journey (and a
real storefront's customers are mostly signed up already).

Each customer is signed up once per mode and signed in again before each measurement (access
tokens live 15 minutes); the journeys read `email password token` lines (BENCH_CUSTOMERS).

The read workloads (order-read, cart-read, notifications-read) need customers with something
to read: `Readers` places their orders, fills their carts and waits until the orders have
settled and sent their notifications, before any of it is measured.
"""

import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

PASSWORD = "bench-password-1"
ATTEMPTS = 20
SETTLED = ("confirmed", "cancelled")
SETTLE_WAIT = 120.0
"""Seconds the readers' orders (and their notifications) may take to settle."""
TOKEN_AGE = 600.0
"""Seconds after which the readers sign in again (access tokens live 15 minutes)."""
ADDRESS = {
    "name": "Bench Shopper",
    "line1": "1 Main St",
    "city": "Springfield",
    "postal_code": "12345",
    "country": "US",
}


def _post(
    client: httpx.Client,
    path: str,
    body: dict,
    accept: tuple[int, ...],
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> httpx.Response:
    """POST (or `method`), waiting as `Retry-After` says while the service is busy (503, 429)."""
    for _ in range(ATTEMPTS):
        answer = client.request(method, path, json=body, headers=headers)
        if answer.status_code in accept:
            return answer
        if answer.status_code not in (429, 503):
            answer.raise_for_status()
        time.sleep(min(float(answer.headers.get("retry-after", "1")), 5.0))
    raise RuntimeError(f"{path} still busy after {ATTEMPTS} attempts")


@dataclass
class Customers:
    url: str
    folder: Path
    emails: list[str] = field(default_factory=list)

    def signed_in(self, count: int) -> Path:
        """A file of `count` customers with fresh access tokens (signing up any missing)."""
        with httpx.Client(base_url=self.url, timeout=30) as client:

            def sign_up(_number: int) -> str:
                email = f"bench-{uuid.uuid4().hex[:16]}@example.com"
                body = {"email": email, "password": PASSWORD, "name": "Bench Shopper"}
                _post(client, "/v1/auth/register", body, (201,))
                return email

            def sign_in(email: str) -> str:
                body = {"email": email, "password": PASSWORD}
                token = _post(client, "/v1/auth/login", body, (200,)).json()["access_token"]
                return f"{email} {PASSWORD} {token}"

            with ThreadPoolExecutor(4) as pool:  # as many as identity answers without a queue
                missing = count - len(self.emails)
                self.emails += list(pool.map(sign_up, range(max(0, missing))))
                lines = list(pool.map(sign_in, self.emails[:count]))
        path = self.folder / "customers.txt"
        path.write_text("\n".join(lines) + "\n")
        return path


@dataclass
class Readers:
    """Signed-in customers, each with `orders` settled orders (and so as many notifications)
    and a cart of `cart_items` products, for the read workloads; `callers` writes the files
    that workloads/signed_in.lua reads."""

    customers: Customers
    count: int
    orders: dict[str, list[str]] = field(default_factory=dict)
    """Each reader's email to the ids of its orders."""
    signed_in_at: float = 0.0
    tokens: dict[str, str] = field(default_factory=dict)

    def prepare(self, stocked: list[str], orders: int, cart_items: int) -> None:
        """Place the orders and fill the carts, then wait until every order has settled and
        its notification is there to read."""
        self._sign_in()
        with httpx.Client(base_url=self.customers.url, timeout=30) as client:

            def fill(email: str) -> list[str]:
                auth = {"Authorization": f"Bearer {self.tokens[email]}"}
                for product in random.sample(stocked, min(cart_items, len(stocked))):
                    one = {"quantity": 1}
                    _post(client, f"/v1/cart/items/{product}", one, (200,), auth, "PUT")
                placed = []
                for _ in range(orders):
                    body = {
                        "items": [{"product_id": random.choice(stocked), "quantity": 1}],
                        "payment_method": "pm_card_visa",
                        "shipping_address": ADDRESS,
                    }
                    headers = auth | {"Idempotency-Key": uuid.uuid4().hex}
                    placed.append(_post(client, "/v1/orders", body, (202,), headers).json()["id"])
                return placed

            emails = self.customers.emails[: self.count]
            with ThreadPoolExecutor(4) as pool:
                self.orders = dict(zip(emails, pool.map(fill, emails), strict=True))
            self._wait_settled(client, orders)

    def _sign_in(self) -> None:
        lines = self.customers.signed_in(self.count).read_text().splitlines()
        self.tokens = {email: token for email, _password, token in map(str.split, lines)}
        self.signed_in_at = time.monotonic()

    def _wait_settled(self, client: httpx.Client, orders: int) -> None:
        deadline = time.monotonic() + SETTLE_WAIT
        waiting = {(email, order) for email, ids in self.orders.items() for order in ids}
        while waiting and time.monotonic() < deadline:
            for email, order in sorted(waiting):
                auth = {"Authorization": f"Bearer {self.tokens[email]}"}
                answer = client.get(f"/v1/orders/{order}", headers=auth)
                if answer.status_code == 200 and answer.json()["status"] in SETTLED:
                    waiting.discard((email, order))
            time.sleep(0.2)
        unread = set(self.orders)
        while unread and time.monotonic() < deadline:
            for email in sorted(unread):
                auth = {"Authorization": f"Bearer {self.tokens[email]}"}
                answer = client.get("/v1/notifications", headers=auth)
                if answer.status_code == 200 and len(answer.json()["items"]) >= orders:
                    unread.discard(email)
            time.sleep(0.2)
        if waiting or unread:
            raise RuntimeError(
                f"readers not ready in {SETTLE_WAIT:.0f} s: {len(waiting)} order(s) unsettled,"
                f" {len(unread)} reader(s) without their notifications"
            )

    def callers(self, with_orders: bool) -> Path:
        """The file of `token` lines, or of `token order_id` lines (every order once, the
        readers taking turns), signed in again when the tokens are getting old."""
        if time.monotonic() - self.signed_in_at > TOKEN_AGE:
            self._sign_in()
        if with_orders:
            rounds = zip(*self.orders.values(), strict=True)
            lines = [
                f"{self.tokens[email]} {order}"
                for ids in rounds
                for email, order in zip(self.orders, ids, strict=True)
            ]
            path = self.customers.folder / "reader-orders.txt"
        else:
            lines = [self.tokens[email] for email in self.orders]
            path = self.customers.folder / "readers.txt"
        path.write_text("\n".join(lines) + "\n")
        return path
