"""The topology of conftest.py while its instances are killed, restarted and stopped, then
brought down (the last test of the two modules that share it): no read fails, no checkout is
lost or doubled, and `bazaar down` leaves no process behind.
"""

import json
import os
import signal
import threading
import time

import httpx

from bazaar.runtime.cluster.supervisor import descendants, is_alive
from bazaar.runtime.processes import DRAIN_SECONDS
from chaos.shop import create_product
from tests.up import shop
from tests.up.probes import ReadinessProbe, slow_csv
from tests.up.running import ReadStream, Running, status_of, wait_for

STREAM_SECONDS = 6.0
SETTLE_BOUND = 60.0
"""The longest the saga may take to settle every order of a stream (2 cores, shared)."""


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
        # a cancelled order's units come back once catalog handles its order.cancelled, which
        # the order's status does not wait for: the stock is eventually that of the confirmed
        shop.stock_settles_at(client, product, 100_000 - confirmed, SETTLE_BOUND)


def test_sigterm_fails_readiness_then_finishes_the_requests_in_flight(
    running: Running, admin: dict[str, str]
) -> None:
    """supervisord's own stop (SIGTERM to the instance's group, as `bazaar down` or a manual
    `supervisorctl stop` sends), without the rolling restart's drain in HAProxy."""
    ids = shop.listed_ids(running)
    port = running.port_of("catalog-1")
    supervisor = running.supervisor()
    uploads: list[int] = []

    def upload() -> None:
        with httpx.Client(timeout=30) as client:
            answer = client.post(
                f"http://127.0.0.1:{port}/v1/products/import",
                content=slow_csv(parts=8, pause=0.4),
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
