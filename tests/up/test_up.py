"""`bazaar up --detach` for real, small (2 instances per service, 1 replica, 2 shards), on free
ports in a data folder of its own and a RabbitMQ virtual host of its own; every request goes
through HAProxy. Ends with `bazaar down`, checked by the pids `up` recorded.

Needs the Debian packages of the README (haproxy, supervisor, postgresql, redis-server) and
RabbitMQ: in CI a missing one fails the run, elsewhere the module is skipped, loudly.
"""

import json
import os
import re
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path

import httpx
import pytest

from bazaar.platform.settings import masked
from bazaar.runtime.cluster.folder import read_env_file
from bazaar.runtime.cluster.supervisor import descendants, is_alive
from bazaar.runtime.processes import DRAIN_SECONDS
from bazaar.runtime.services import SERVICES
from chaos.shop import create_product
from chaos.shop import login as log_in
from tests.api_contract import contract_routes, missing_from
from tests.generated_client import generated
from tests.up import shop, typed_shop
from tests.up.running import ReadStream, Running, prepared, start, status_of, wait_for

STREAM_SECONDS = 6.0
SETTLE_BOUND = 60.0
"""The longest the saga may take to settle every order of a stream (2 cores, shared)."""


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    with prepared() as up:
        instances = "identity=2,catalog=2,orders=2,payments=2,notifications=2"
        started = start(up, instances, replicas=1, shards=2)
        assert started.returncode == 0, started.stdout + started.stderr
        up.recorded = up.run().pids
        yield up


@pytest.fixture(scope="module")
def admin(running: Running) -> dict[str, str]:
    with httpx.Client(base_url=running.base, timeout=10) as client:
        return shop.admin(running, client)


def _listed_ids(up: Running) -> list[str]:
    items = httpx.get(f"{up.base}/v1/products", timeout=5).json()["items"]
    assert items
    return [item["id"] for item in items]


def _product_ids(up: Running) -> list[str]:
    """Seeded into the running topology's catalog (with the settings `up` wrote down)."""
    seeded = up.bazaar("seed", "--products", "5", environ=up.settings(), timeout=120)
    assert seeded.returncode == 0, seeded.stderr

    def listed() -> list[str]:
        items = httpx.get(f"{up.base}/v1/products?limit=5", timeout=5).json()["items"]
        return [item["id"] for item in items] if len(items) == 5 else []

    return wait_for(listed, 10, "the seeded products listed")


def test_the_api_answers_through_haproxy(running: Running) -> None:
    assert wait_for(lambda: status_of(f"{running.base}/readyz") == 200, 60, "ready through HAProxy")
    assert status_of(f"{running.base}/healthz") == 200
    email = f"up-{uuid.uuid4().hex[:8]}@example.com"
    registered = httpx.post(
        f"{running.base}/v1/auth/register",
        json={"email": email, "password": "correct horse", "name": "Up"},
        timeout=5,
    )
    assert registered.status_code == 201, registered.text
    login = httpx.post(
        f"{running.base}/v1/auth/login",
        json={"email": email, "password": "correct horse"},
        timeout=5,
    )
    assert login.status_code == 200
    token = login.json()["access_token"]
    me = httpx.get(
        f"{running.base}/v1/users/me", headers={"authorization": f"Bearer {token}"}, timeout=5
    )
    assert me.json()["email"] == email
    ids = _product_ids(running)
    assert httpx.get(f"{running.base}/v1/products/{ids[0]}", timeout=5).status_code == 200
    nowhere = httpx.get(f"{running.base}/v1/nowhere", timeout=5)
    assert nowhere.status_code == 404
    assert nowhere.headers["content-type"] == "application/problem+json"
    assert nowhere.json()["type"] == "urn:bazaar:problem:not-found"
    # every answer carries a request id: HAProxy's own and the services', the client's if safe
    for path in ("/healthz", "/readyz", "/v1/nowhere", "/v1/categories"):
        given = httpx.get(f"{running.base}{path}", timeout=5).headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", given), (path, given)
        echoed = httpx.get(f"{running.base}{path}", headers={"X-Request-ID": "up:1"}, timeout=5)
        assert echoed.headers.get_list("x-request-id") == ["up:1"]
        unsafe = httpx.get(f"{running.base}{path}", headers={"X-Request-ID": "a b"}, timeout=5)
        assert re.fullmatch(r"[0-9a-f]{32}", unsafe.headers["x-request-id"])


def test_admin_create_finds_the_running_up_by_itself_and_the_admin_logs_in(
    running: Running,
) -> None:
    email = f"found-{uuid.uuid4().hex[:8]}@example.com"
    created = running.bazaar_bare("admin", "create", "--email", email, stdin="found it 12\n")
    assert created.returncode == 0, created.stderr
    database = masked(read_env_file(running.up_folder / "tools.env")["BAZAAR_DATABASE_URL"])
    said = f"Using the running `bazaar up` at {running.up_folder} (PostgreSQL {database}"
    assert created.stderr.startswith(said), created.stderr
    assert "RabbitMQ amqp://" in created.stderr.splitlines()[0]
    with httpx.Client(base_url=running.base, timeout=5) as client:
        me = client.get("/v1/users/me", headers=log_in(client, email, "found it 12")).json()
    assert (me["email"], me["role"]) == (email, "admin")
    # told to, a command leaves the running `up` alone: the embedded default, said
    aside = running.bazaar_bare("config", BAZAAR_TARGET="environment")
    assert aside.stderr.startswith(f"Using the embedded default under {running.data_dir}")


def _emails_to(up: Running, address: str) -> list:
    return [
        message
        for path in (up.up_folder / "mail").glob("*.eml")
        if address in (message := message_from_bytes(path.read_bytes())).get("To", "")
    ]


def test_the_whole_checkout_end_to_end(running: Running, admin: dict[str, str]) -> None:
    with httpx.Client(base_url=running.base, timeout=10) as client:
        ada = shop.customer(client)
        headers = ada.headers
        product = create_product(client, admin, stock=5, amount=2500)
        cart = client.put(f"/v1/cart/items/{product}", json={"quantity": 2}, headers=headers)
        assert cart.status_code == 200 and cart.json()["total"]["amount"] == 5000, cart.text
        keyed = {**headers, "Idempotency-Key": uuid.uuid4().hex}
        body = shop.order_body(None, "pm_card_visa")
        placed = client.post("/v1/orders", json=body, headers=keyed)
        assert placed.status_code == 202, placed.text
        again = client.post("/v1/orders", json=body, headers=keyed)
        assert again.headers.get("idempotent-replayed") == "true"
        assert again.json()["id"] == placed.json()["id"]

        order = shop.settled(client, headers, placed.json()["id"], within=20)
        assert order["status"] == "confirmed", order
        assert order["total"]["amount"] == 5000
        payment = client.get(f"/v1/payments/{order['payment_id']}", headers=headers).json()
        assert (payment["status"], payment["amount"]["amount"]) == ("succeeded", 5000)
        assert client.get("/v1/cart", headers=headers).json()["items"] == []
        assert shop.stock_of(client, product) == 3

        declined = client.post(
            "/v1/orders",
            json=shop.order_body(product, "pm_card_declined", quantity=3),
            headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
        )
        assert declined.status_code == 202, declined.text
        cancelled = shop.settled(client, headers, declined.json()["id"], within=20)
        assert (cancelled["status"], cancelled["cancel_reason"]) == (
            "cancelled",
            "payment_declined",
        )
        assert shop.stock_of(client, product) == 3

        def notified() -> list[str]:
            items = client.get("/v1/notifications", headers=headers).json()["items"]
            return sorted(item["kind"] for item in items) if len(items) >= 2 else []

        kinds = wait_for(notified, 20, "both notifications listed")
        assert kinds == ["order_cancelled", "order_confirmed"]
    emails = wait_for(lambda: _emails_to(running, ada.email), 20, "the emails in the sink")
    wait_for(lambda: len(_emails_to(running, ada.email)) == 2, 20, "both emails in the sink")
    subjects = sorted(m["Subject"] for m in _emails_to(running, ada.email))
    assert subjects == sorted(
        [f"Your order {order['id']} is confirmed", f"Your order {cancelled['id']} is cancelled"]
    ), emails
    status = json.loads(running.bazaar("status", "--json").stdout)
    assert status["emails"] == len(list((running.up_folder / "mail").glob("*.eml"))) >= 2


def test_a_client_generated_from_the_front_doors_document_completes_the_checkout(
    running: Running, admin: dict[str, str], tmp_path: Path
) -> None:
    """The document clients get through HAProxy is the whole API's (every route of API.md),
    and a typed client generated from it (openapi-python-client) completes the checkout."""
    document = httpx.get(f"{running.base}/openapi.json", timeout=10).json()
    assert missing_from(document, contract_routes()) == []
    assert [tag["name"] for tag in document["tags"]] == list(SERVICES)
    with generated(document, tmp_path) as client:
        order = typed_shop.checkout(client, running.base, admin)
    assert (order.status, order.total.amount) == ("confirmed", 3998)


def test_a_killed_catalog_instance_fails_no_read_and_comes_back(running: Running) -> None:
    ids = [
        item["id"] for item in httpx.get(f"{running.base}/v1/products", timeout=5).json()["items"]
    ]
    supervisor = running.supervisor()
    victim = next(p for p in supervisor.programs() if p.name == "catalog-0")
    port = running.port_of("catalog-0")
    with ReadStream(running.base, ids) as stream:
        time.sleep(1.0)
        os.killpg(victim.pid, signal.SIGKILL)  # the instance: granian and its worker
        time.sleep(STREAM_SECONDS)
    assert len(stream.statuses) > 50
    assert set(stream.statuses) == {200}, [s for s in stream.statuses if s != 200]

    def back() -> bool:
        now = next(p for p in supervisor.programs() if p.name == "catalog-0")
        return now.pid != victim.pid and now.state == "RUNNING"

    wait_for(back, 30, "catalog-0 restarted by supervisord")
    wait_for(lambda: status_of(f"http://127.0.0.1:{port}/readyz") == 200, 30, "catalog-0 ready")
    wait_for(lambda: running.haproxy_sees("catalog-0") == "UP", 10, "HAProxy sees catalog-0 UP")
    status = json.loads(running.bazaar("status", "--json").stdout)
    assert next(p for p in status["programs"] if p["name"] == "catalog-0")["restarts"] >= 1


def test_a_rolling_restart_of_catalog_fails_no_read(running: Running) -> None:
    ids = [
        item["id"] for item in httpx.get(f"{running.base}/v1/products", timeout=5).json()["items"]
    ]
    before = {p.name: p.pid for p in running.supervisor().programs()}
    with ReadStream(running.base, ids) as stream:
        restarted = running.bazaar("restart", "catalog", timeout=240)
    assert restarted.returncode == 0, restarted.stderr
    assert set(stream.statuses) == {200}, [s for s in stream.statuses if s != 200]
    after = {p.name: p.pid for p in running.supervisor().programs()}
    for name in ("catalog-0", "catalog-1", "catalog-worker"):
        assert after[name] != before[name]
    assert after["orders-0"] == before["orders-0"]


def _admin_orders(client: httpx.Client, admin: dict[str, str], customer_id: str) -> list[dict]:
    """Every order of one customer, through the admin listing, page after page."""
    found: list[dict] = []
    cursor = None
    while True:
        params = {
            "customer_id": customer_id,
            "limit": 100,
            **({"cursor": cursor} if cursor else {}),
        }
        page = client.get("/v1/admin/orders", params=params, headers=admin)
        assert page.status_code == 200, page.text
        found += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return found


def test_a_rolling_restart_of_orders_loses_or_doubles_no_checkout(
    running: Running, admin: dict[str, str]
) -> None:
    with httpx.Client(base_url=running.base, timeout=10) as client:
        product = create_product(client, admin, stock=100_000, amount=300)
        shoppers = [shop.Shopper(shop.customer(client, f"Shopper{n}")) for n in range(3)]
    before = {p.name: p.pid for p in running.supervisor().programs()}
    with shop.Checkouts(running.base, shoppers, product) as checkouts:
        time.sleep(1.0)
        began = time.monotonic()
        restarted = running.bazaar("restart", "orders", timeout=240)
        took = time.monotonic() - began
        time.sleep(1.0)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    after = {p.name: p.pid for p in running.supervisor().programs()}
    assert all(after[n] != before[n] for n in ("orders-0", "orders-1", "orders-worker"))
    placed = sum(len(s.placed) for s in shoppers)
    print(f"restart orders took {took:.1f} s; {placed} checkouts; answers {checkouts.answers}")
    assert checkouts.failures == []
    assert placed >= 20
    assert {status for status in checkouts.answers if status >= 500} <= {503}

    with httpx.Client(base_url=running.base, timeout=10) as client:
        confirmed = 0
        for shopper in shoppers:
            ids = list(shopper.placed.values())
            assert len(set(ids)) == len(ids)  # one order per key
            customer = shopper.customer.id

            def settled(customer: str = customer, count: int = len(ids)) -> list[dict]:
                orders = _admin_orders(client, admin, customer)
                done = [o for o in orders if o["status"] != "pending"]
                return orders if len(done) == len(orders) >= count else []

            orders = wait_for(settled, SETTLE_BOUND, f"every order of {customer} settled")
            assert sorted(o["id"] for o in orders) == sorted(ids)  # none lost, none doubled
            for key, order_id in shopper.placed.items():
                order = next(o for o in orders if o["id"] == order_id)
                wanted = "cancelled" if key in shopper.declined else "confirmed"
                assert order["status"] == wanted, order
            confirmed += sum(1 for o in orders if o["status"] == "confirmed")
        assert shop.stock_of(client, product) == 100_000 - confirmed


def _slow_csv(parts: int, pause: float) -> Iterator[bytes]:
    """A CSV import body that takes `parts * pause` seconds to send."""
    yield b"sku,name,description,category,price_amount,currency,stock\n"
    for _ in range(parts):
        time.sleep(pause)
        yield f"SLOW-{uuid.uuid4().hex[:10]},Slow,Sent slowly,machines,100,USD,1\n".encode()


class ReadinessProbe:
    """/readyz of one instance every 100 ms, each answer kept (0: nothing answered)."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/readyz"
        self.seen: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._probe, daemon=True)

    def _probe(self) -> None:
        while not self._stop.is_set():
            self.seen.append(status_of(self.url))
            time.sleep(0.1)

    def __enter__(self) -> "ReadinessProbe":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def test_sigterm_fails_readiness_then_finishes_the_requests_in_flight(
    running: Running, admin: dict[str, str]
) -> None:
    """supervisord's own stop (SIGTERM to the instance's group, as `bazaar down` or a manual
    `supervisorctl stop` sends), without the rolling restart's drain in HAProxy."""
    ids = _listed_ids(running)
    port = running.port_of("catalog-1")
    supervisor = running.supervisor()
    uploads: list[int] = []

    def upload() -> None:
        with httpx.Client(timeout=30) as client:
            answer = client.post(
                f"http://127.0.0.1:{port}/v1/products/import",
                content=_slow_csv(parts=8, pause=0.4),
                headers={**admin, "content-type": "text/csv"},
            )
            uploads.append(answer.status_code)

    senders = [threading.Thread(target=upload) for _ in range(4)]
    with ReadStream(running.base, ids) as stream, ReadinessProbe(port) as probe:
        for sender in senders:
            sender.start()
        time.sleep(0.6)  # every upload is in flight
        began = time.monotonic()
        supervisor.stop("catalog:catalog-1")
        took = time.monotonic() - began
        for sender in senders:
            sender.join(timeout=30)
        seen_down = running.haproxy_sees("catalog-1")
    print(f"catalog-1 stopped in {took:.1f} s; readiness seen {probe.seen}")
    assert uploads == [202] * 4
    assert took >= DRAIN_SECONDS
    assert 503 in probe.seen
    assert probe.seen.index(503) < probe.seen.index(0)  # unready first, then gone
    assert seen_down.startswith("DOWN")
    assert set(stream.statuses) == {200}, [s for s in stream.statuses if s != 200]
    supervisor.start("catalog:catalog-1")
    wait_for(lambda: status_of(f"http://127.0.0.1:{port}/readyz") == 200, 30, "catalog-1 ready")
    wait_for(lambda: running.haproxy_sees("catalog-1") == "UP", 10, "HAProxy sees catalog-1 UP")


def test_prometheus_scrapes_every_process_and_follows_scale(running: Running) -> None:
    run = running.run()
    expected = {p.name: "up" for p in run.processes} | {"haproxy": "up"}
    assert len(expected) == 16
    wait_for(lambda: running.scraped() == expected, 30, "every process scraped and up")
    kinds = running.query('count by (kind) (up{job="bazaar"})')
    assert {r["metric"]["kind"]: r["value"][1] for r in kinds} == {
        "serve": "10",
        "worker": "5",
        "haproxy": "1",
    }
    assert running.query('bazaar_queue_messages{consumer="orders",state="ready"}')
    assert running.query("bazaar_db_pool_capacity > 0")

    scaled = running.bazaar("scale", "catalog", "1")
    assert scaled.returncode == 0, scaled.stdout + scaled.stderr
    wait_for(lambda: "catalog-1" not in running.scraped(), 15, "catalog-1 no longer scraped")
    scaled = running.bazaar("scale", "catalog", "2")
    assert scaled.returncode == 0, scaled.stdout + scaled.stderr
    wait_for(lambda: running.scraped() == expected, 20, "catalog-1 scraped and up again")
    status = json.loads(running.bazaar("status", "--json").stdout)
    assert status["prometheus"] == running.prometheus


def test_status_reports_every_part(running: Running) -> None:
    report = json.loads(running.bazaar("status", "--json").stdout)
    names = {p["name"] for p in report["programs"]}
    assert {"haproxy", "redis", "mailsink", "orders-1", "notifications-worker"} <= names
    assert all(p["state"] == "RUNNING" for p in report["programs"])
    assert all(p["ready"] for p in report["programs"] if p["port"])
    assert len(report["backends"]) == 10
    assert [r["state"] for r in report["replicas"]] == ["streaming"]
    assert {q["consumer"] for q in report["queues"]} >= {"orders"}
    assert report["emails"] >= 2
    assert report["budget"]["total"] <= report["budget"]["max_connections"]


def test_down_leaves_no_process_behind(running: Running) -> None:
    supervisord = running.supervisor().pid()
    recorded = [*running.recorded, supervisord, *descendants(supervisord)]
    assert len(recorded) > 30
    stopped = running.bazaar("down", timeout=180)
    assert stopped.returncode == 0, stopped.stderr
    assert [pid for pid in recorded if is_alive(pid)] == []
    assert status_of(f"{running.base}/healthz") == 0
    assert not (running.up_folder / "run.json").exists()
    stale = running.bazaar_bare("config")  # the folder `down` left names servers now gone
    assert stale.stderr.startswith("Using the embedded default under"), stale.stderr
