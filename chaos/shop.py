"""The shop under test, as its customers use it: a steady stream of checkouts (each with an
Idempotency-Key, sent again with it while the answer says to retry), some paid with a card the
sandbox declines, some cancelled by the customer once accepted, and browsing beside them.

Every answer lands on a `Timeline` with the second it came, so a report can show throughput
and errors around a fault. The clients behave as the contract asks of them: 503 and 429 are
retried after their Retry-After (at most a second here), 409 "in flight" after a moment, a
request that got no answer (reset, refused, timed out) is sent again with the same key.
"""

import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx

PASSWORD = "chaos-password"
ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "12 St James's Square",
    "city": "London",
    "postal_code": "SW1Y 4JH",
    "country": "GB",
}
NO_ANSWER = -1
"""The status recorded when no answer came: the connection refused, reset or closed."""
TIMED_OUT = -2
"""The status recorded when no answer came within REQUEST_TIMEOUT: never allowed."""
REQUEST_TIMEOUT = 10.0
"""The longest a client waits for one answer."""
RETRIED = {409, 429, 503, NO_ANSWER, TIMED_OUT}
KEY_BOUND = 60.0
"""The longest one checkout (or cancellation) is retried before the stream counts it failed."""
DECLINE_EVERY = 4
CANCEL_EVERY = 5


@dataclass(frozen=True)
class Answer:
    at: float
    """Seconds since the timeline began."""
    operation: str
    """`checkout`, `cancel` or `browse`."""
    status: int
    retry_after: bool
    """Whether a 503 or 429 said when to come back."""
    seconds: float


@dataclass
class Timeline:
    began: float = field(default_factory=time.monotonic)
    answers: list[Answer] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def now(self) -> float:
        return time.monotonic() - self.began

    def mark(self, name: str) -> None:
        self.marks[name] = self.now()

    def add(self, operation: str, status: int, retry_after: bool, seconds: float) -> None:
        with self._lock:
            self.answers.append(Answer(self.now(), operation, status, retry_after, seconds))


@dataclass(frozen=True)
class Customer:
    id: str
    email: str
    headers: dict[str, str]


def login(client: httpx.Client, email: str, password: str = PASSWORD) -> dict[str, str]:
    answer = client.post("/v1/auth/login", json={"email": email, "password": password})
    answer.raise_for_status()
    return {"authorization": f"Bearer {answer.json()['access_token']}"}


def sign_up(client: httpx.Client, name: str) -> Customer:
    email = f"{name.lower()}-{uuid.uuid4().hex[:8]}@example.com"
    body = {"email": email, "password": PASSWORD, "name": name}
    answer = client.post("/v1/auth/register", json=body)
    answer.raise_for_status()
    return Customer(answer.json()["id"], email, login(client, email))


def create_product(client: httpx.Client, admin: dict[str, str], stock: int, amount: int) -> str:
    body = {
        "sku": f"CHAOS-{uuid.uuid4().hex[:10]}",
        "name": "Difference Engine",
        "description": "Tabulates polynomials.",
        "category": "chaos",
        "price": {"amount": amount, "currency": "USD"},
        "stock": stock,
    }
    answer = client.post("/v1/products", json=body, headers=admin)
    answer.raise_for_status()
    return answer.json()["id"]


@dataclass
class Placed:
    key: str
    order_id: str
    declined: bool
    cancel_asked: bool = False


class Stream:
    """Shoppers checking out one after another (one thread each) and browsers reading, until
    stopped; what each shopper placed, and any answer outside the contract, kept."""

    def __init__(
        self,
        base: str,
        customers: list[Customer],
        products: list[str],
        timeline: Timeline,
        browsers: int = 2,
    ) -> None:
        self.base, self.products, self.timeline = base, products, timeline
        self.placed: list[Placed] = []
        self.failures: list[str] = []
        self.unanswered: Counter[str] = Counter()
        """Requests that got no answer, by operation and the client's error."""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._shop, args=(number, c), daemon=True)
            for number, c in enumerate(customers)
        ] + [
            threading.Thread(target=self._browse, args=(number,), daemon=True)
            for number in range(browsers)
        ]

    def __enter__(self) -> "Stream":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop starting checkouts; those being retried finish (bounded by KEY_BOUND)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=KEY_BOUND + REQUEST_TIMEOUT + 5)

    def _send(
        self, client: httpx.Client, operation: str, method: str, path: str, **request: object
    ) -> httpx.Response | None:
        began = time.monotonic()
        try:
            answer = client.request(method, path, **request)  # type: ignore[arg-type]
        except httpx.HTTPError as error:
            status = TIMED_OUT if isinstance(error, httpx.TimeoutException) else NO_ANSWER
            self.timeline.add(operation, status, False, time.monotonic() - began)
            with self._lock:
                self.unanswered[f"{operation}: {type(error).__name__}"] += 1
            return None
        waited = "retry-after" in answer.headers
        self.timeline.add(operation, answer.status_code, waited, time.monotonic() - began)
        return answer

    def _until_answered(
        self,
        client: httpx.Client,
        operation: str,
        path: str,
        retried: set[int] = RETRIED,
        **request: object,
    ) -> httpx.Response | None:
        """POST `path` until the answer is not one of `retried`; None (and a failure) after
        KEY_BOUND."""
        deadline = time.monotonic() + KEY_BOUND
        while time.monotonic() < deadline:
            answer = self._send(client, operation, "POST", path, **request)
            status = NO_ANSWER if answer is None else answer.status_code  # either: retried
            if status not in retried:
                return answer
            wait = 0.1
            if answer is not None and "retry-after" in answer.headers:
                wait = min(float(answer.headers["retry-after"]), 1.0)
            time.sleep(wait)
        self.failures.append(f"{operation} {path}: not answered within {KEY_BOUND:.0f} s")
        return None

    def _shop(self, number: int, customer: Customer) -> None:
        count = 0
        with httpx.Client(base_url=self.base, timeout=REQUEST_TIMEOUT) as client:
            while not self._stop.is_set():
                count += 1
                declined = count % DECLINE_EVERY == 0
                placed = self._checkout(client, customer, number + count, declined)
                if placed is None:
                    continue
                if not declined and count % CANCEL_EVERY == 0:
                    placed.cancel_asked = self._cancel(client, customer, placed.order_id)

    def _checkout(
        self, client: httpx.Client, customer: Customer, turn: int, declined: bool
    ) -> Placed | None:
        key = uuid.uuid4().hex
        body = {
            "items": [{"product_id": self.products[turn % len(self.products)], "quantity": 1}],
            "payment_method": "pm_card_declined" if declined else "pm_card_visa",
            "shipping_address": ADDRESS,
        }
        headers = {**customer.headers, "Idempotency-Key": key}
        answer = self._until_answered(client, "checkout", "/v1/orders", json=body, headers=headers)
        if answer is None:
            return None
        if answer.status_code not in (200, 202):
            self.failures.append(f"checkout {key}: {answer.status_code} {answer.text[:200]}")
            return None
        placed = Placed(key, answer.json()["id"], declined)
        with self._lock:
            self.placed.append(placed)
        return placed

    def _cancel(self, client: httpx.Client, customer: Customer, order_id: str) -> bool:
        path = f"/v1/orders/{order_id}/cancel"
        # no Idempotency-Key here: a 409 says the order is cancelled already, not "in flight"
        retried = RETRIED - {409}
        answer = self._until_answered(client, "cancel", path, retried, headers=customer.headers)
        if answer is None:
            return False
        if answer.status_code not in (200, 409):  # 409: the saga cancelled it first
            self.failures.append(f"cancel {order_id}: {answer.status_code} {answer.text[:200]}")
        return answer.status_code == 200

    def _browse(self, number: int) -> None:
        turn = number
        with httpx.Client(base_url=self.base, timeout=REQUEST_TIMEOUT) as client:
            while not self._stop.is_set():
                turn += 1
                if turn % 2:
                    self._send(client, "browse", "GET", "/v1/products", params={"limit": 20})
                else:
                    product = self.products[turn % len(self.products)]
                    self._send(client, "browse", "GET", f"/v1/products/{product}")
                time.sleep(0.02)

    def accepted(self) -> set[str]:
        with self._lock:
            return {placed.order_id for placed in self.placed}
