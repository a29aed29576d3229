"""`bazaar up --detach` for real (the topology of conftest.py): every request goes through
HAProxy; the API, the checkout and its trace, the documents, Prometheus, `status`.

Needs the Debian packages of the README (haproxy, supervisor, postgresql, redis-server) and
RabbitMQ: in CI a missing one fails the run, elsewhere the module is skipped, loudly.
"""

import itertools
import json
import re
import uuid
from email import message_from_bytes
from pathlib import Path

import httpx

from bazaar.platform.settings import masked
from bazaar.runtime.cluster.folder import read_env_file
from bazaar.runtime.services import SERVICES
from bench.otlp import Receiver, tree
from chaos.shop import create_product
from chaos.shop import login as log_in
from tests.api_contract import contract_routes, missing_from
from tests.generated_client import generated
from tests.up import shop, typed_shop
from tests.up.running import Running, status_of, wait_for


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
    ids = shop.product_ids(running)
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
        shop.stock_settles_at(client, product, 3, 20)  # released after the order shows cancelled

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


SAGA = (
    ("POST /v1/orders", "bazaar-orders"),
    ("catalog.reserve_stock process order.placed", "bazaar-catalog"),
    ("payments.capture_payment process stock.reserved", "bazaar-payments"),
    ("orders process payment.succeeded", "bazaar-orders"),
    ("notifications process order.confirmed", "bazaar-notifications"),
    ("job email", "bazaar-notifications"),
)
"""The spans of a checkout's hops under `up`, each the child of the one before, and the
service whose process made it."""


def test_a_checkout_is_one_trace_across_the_services_processes(
    running: Running, admin: dict[str, str], traces: tuple[Receiver, str]
) -> None:
    """The client's own `traceparent` starts the trace; every hop, in the API and worker
    processes of four services, joins it through the outbox, RabbitMQ and the job queue."""
    receiver, _url = traces
    trace_id = uuid.uuid4().hex
    with httpx.Client(base_url=running.base, timeout=10) as client:
        ada = shop.customer(client, "Trace")
        product = create_product(client, admin, stock=3, amount=1250)
        placed = client.post(
            "/v1/orders",
            json=shop.order_body(product, "pm_card_visa"),
            headers={
                **ada.headers,
                "Idempotency-Key": uuid.uuid4().hex,
                "traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01",
            },
        )
        assert placed.status_code == 202, placed.text
        assert shop.settled(client, ada.headers, placed.json()["id"], within=20)["status"] == (
            "confirmed"
        )

    def every_hop() -> list | None:  # exported in batches, every few seconds
        spans = receiver.trace(trace_id)
        named = {span.name: span for span in spans}
        return spans if all(name in named for name, _service in SAGA) else None

    spans = wait_for(every_hop, 30, "every hop of the checkout exported")
    print(f"\n{len(spans)} spans of one checkout under bazaar up:\n{tree(spans)}")
    named = {span.name: span for span in spans}
    hops = [named[name] for name, _service in SAGA]
    assert [hop.service for hop in hops] == [service for _name, service in SAGA]
    for parent, child in itertools.pairwise(hops):
        assert child.parent_id == parent.span_id, (child.name, parent.name)
    # one tree under the client's span: every span's parent is in the trace but the POST's
    ids = {span.span_id for span in spans}
    assert [span.name for span in spans if span.parent_id not in ids] == ["POST /v1/orders"]
    assert not [span.name for span in spans if span.error]


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
