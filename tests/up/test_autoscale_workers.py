"""`bazaar up --autoscale notifications-worker=1..3`: orders placed faster than one
notifications worker under a small CPU quota handles their events back its queue up; the
autoscaler starts more workers on the queue's depth, and stops them once it has drained, with
nothing lost: every order settles, and each has its one notification and its one email.
Windows shortened through the settings."""

import json
import re
from collections import Counter
from email import message_from_bytes

import httpx
import msgspec

from bazaar.runtime.cluster.autoscale import Report
from chaos.shop import create_product
from tests.up import shop
from tests.up.running import Running, prepared, start, wait_for

WORKERS = ["notifications-worker", "notifications-worker-1", "notifications-worker-2"]
KEY = "notifications-worker"
SHORT = {"BAZAAR_AUTOSCALE_PERIOD": "1", "BAZAAR_AUTOSCALE_DOWN_WINDOW": "8"}
SHOPPERS = 6


def _report(up: Running) -> Report:
    return msgspec.json.decode((up.up_folder / "autoscale.json").read_bytes(), type=Report)


def _running(up: Running) -> int:
    report = _report(up) if (up.up_folder / "autoscale.json").exists() else None
    return report.services[KEY].in_service if report and KEY in report.services else 0


def _states(up: Running) -> list[str]:
    states = {p.name: p.state for p in up.supervisor().programs()}
    return [states[name] for name in WORKERS]


def _order_subjects(client: httpx.Client, headers: dict[str, str]) -> list[str]:
    """The subjects of every notification of the caller (all pages)."""
    subjects, cursor = [], None
    while True:
        params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/notifications", params=params, headers=headers).json()
        subjects += [item["subject"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return subjects


def _order_ids_in(subjects: list[str]) -> Counter[str]:
    return Counter(m.group(1) for s in subjects if (m := re.search(r"order (\S+) is", s)))


def _emailed(up: Running) -> Counter[str]:
    subjects = [
        message_from_bytes(path.read_bytes()).get("Subject", "")
        for path in (up.up_folder / "mail").glob("*.eml")
    ]
    return _order_ids_in(subjects)


def _status_json(up: Running) -> dict | None:
    """`bazaar status --json`, None (and why, printed) when it did not answer: its calls to
    supervisord are bounded to 3 s, which a loaded machine may exceed."""
    shown = up.bazaar("status", "--json")
    if shown.returncode != 0:
        print("status:", shown.stdout[-300:], shown.stderr[-1000:])
        return None
    found: dict = json.loads(shown.stdout)
    return found


def test_a_backed_up_queue_scales_the_workers_up_and_back_down_losing_nothing() -> None:
    with prepared(SHORT) as up:
        options = ("--autoscale", f"{KEY}=1..3", "--autoscale-target", f"{KEY}=10")
        quota = ("--cpu-quota", f"{KEY}=0.1")
        instances = "identity=1,catalog=1,orders=1,payments=1,notifications=1"
        started = start(up, instances, 0, 1, *options, *quota)
        assert started.returncode == 0, started.stdout + started.stderr
        assert _states(up) == ["RUNNING", "STOPPED", "STOPPED"]
        run = up.run()
        assert [p.cpu_quota for p in run.of("notifications", "worker")] == [0.1] * 3
        assert len({p.port for p in run.of("notifications", "worker")}) == 3

        with httpx.Client(base_url=up.base, timeout=10) as client:
            admin = shop.admin(up, client)
            product = create_product(client, admin, stock=1_000_000, amount=100)
            shoppers = [shop.Shopper(shop.customer(client, f"S{i}")) for i in range(SHOPPERS)]
        with shop.Checkouts(up.base, shoppers, product) as checkouts:
            wait_for(lambda: _running(up) >= 2, 90, "a scale-up of the workers")
        assert not checkouts.failures, checkouts.failures
        placed = {order for s in shoppers for order in s.placed.values()}
        print(f"{len(placed)} orders placed; answers {checkouts.answers}")
        assert len(placed) >= 50, checkouts.answers

        with httpx.Client(base_url=up.base, timeout=10) as client:
            for shopper in shoppers:
                for key, order in shopper.placed.items():
                    status = shop.settled(client, shopper.customer.headers, order, 120)["status"]
                    assert status == ("cancelled" if key in shopper.declined else "confirmed")
            for shopper in shoppers:
                headers, mine = shopper.customer.headers, set(shopper.placed.values())

                def notified(h: dict[str, str] = headers, m: set[str] = mine) -> Counter[str]:
                    found = _order_ids_in(_order_subjects(client, h))
                    return found if set(found) == m else Counter()

                counts = wait_for(notified, 120, "a notification of each order")
                assert set(counts.values()) == {1}, counts
        emails = wait_for(lambda: set(_emailed(up)) == placed and _emailed(up), 120, "the emails")
        assert set(emails.values()) == {1}, [o for o, n in emails.items() if n > 1]

        wait_for(lambda: _running(up) == 1, 90, "back to one worker")
        events = [e for e in _report(up).events if e.service == KEY]
        print("\n".join(f"{e.at:.1f} {e.before} -> {e.after}: {e.reason}" for e in events))
        assert any(e.after > e.before for e in events), events
        assert any(e.after < e.before for e in events), events
        assert not any("failed" in e.reason for e in events), events
        assert _states(up) == ["RUNNING", "STOPPED", "STOPPED"]
        status = up.bazaar("status")
        assert re.search(r"notifications-worker\s+1 -> [23]\s+ready", status.stdout), status.stdout
        shown = wait_for(lambda: _status_json(up), 30, "`bazaar status --json` answered")
        queues = shown["queues"]
        assert all(q["dead"] in (0, None) for q in queues), queues
