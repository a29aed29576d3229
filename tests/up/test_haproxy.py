"""HAProxy under `bazaar up`, run on its generated configuration: every answer carries the
request's `X-Request-ID` (the client's when safe, as the services take it, else a new one that
the instance is sent too), and its own errors are the services' problems."""

import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from bazaar.platform import errors
from bazaar.platform.problems import problem
from bazaar.platform.web import _SAFE_REQUEST_ID
from bazaar.runtime.cluster import haproxy
from bazaar.runtime.cluster.topology import Process, free_port
from bazaar.runtime.services import SERVICES
from tests.scaled import _unavailable

GENERATED = re.compile(r"^[0-9a-f]{32}$")
"""A request id as the services make one."""
SLOW_SECONDS = 3.0
SERVER_TIMEOUT = "timeout server 1s"
"""Shorter than the instance's slow answer, so that HAProxy gives up on it (504)."""
REFUSED = "/v1/products/refused"
LIMITED = "/v1/products/limited"
EXTRA_RULES = (
    # The shop limits rates in the services, not in HAProxy: these stand for any rule that
    # would, to show what such a refusal answers.
    f"    http-request deny deny_status 403 if {{ path {REFUSED} }}",
    f"    http-request deny deny_status 429 if {{ path {LIMITED} }}",
)


@dataclass
class Instance:
    """A tiny stand-in for every service's instance: ready, and it records the request ids it
    is sent (`/v1/...`); `.../broken` answers what is not HTTP, `.../slow` answers too late.
    It never sets `X-Request-ID` itself: what the client gets is HAProxy's doing."""

    port: int
    seen: list[list[str]] = field(default_factory=list)


def _serve(instance: Instance) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/readyz":
                self._answer(b"ready")
                return
            instance.seen.append(self.headers.get_all("X-Request-ID") or [])
            if self.path.endswith("/broken"):
                self.wfile.write(b"NOT HTTP AT ALL\r\n\r\n")
                self.close_connection = True
            elif self.path.endswith("/slow"):
                time.sleep(SLOW_SECONDS)
                self.close_connection = True
            else:
                self._answer(b'{"ok":true}')

        def _answer(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", instance.port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _haproxy(tmp_path: Path, config: str) -> subprocess.Popen[bytes]:
    path = tmp_path / "haproxy.cfg"
    path.write_text(config)
    checked = subprocess.run(["haproxy", "-c", "-f", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    return subprocess.Popen(["haproxy", "-db", "-f", str(path)], stderr=subprocess.DEVNULL)


def _until(url: str, status: int, timeout: float = 10) -> httpx.Response:
    deadline = time.monotonic() + timeout
    answer = None
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(url, timeout=5)
            if answer.status_code == status:
                return answer
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer {status} in {timeout} s: {answer}")


@dataclass
class Shop:
    url: str
    instance: Instance

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=10, **kwargs)


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    """HAProxy on its generated configuration, every service's one instance the tiny one."""
    if shutil.which("haproxy") is None:
        _unavailable("haproxy is not installed (see the README)")
    instance = Instance(free_port())
    server = _serve(instance)
    port = free_port()
    balancer = haproxy.Balancer(port, free_port(), tmp_path / "haproxy.sock")
    processes = [Process(f"{s}-0", s, "serve", instance.port) for s in SERVICES]
    config = haproxy.render(balancer, processes)
    assert config.count("timeout server 30s") == 1
    config = config.replace("timeout server 30s", SERVER_TIMEOUT)
    first_route = config.index("    use_backend ")
    config = config[:first_route] + "\n".join(EXTRA_RULES) + "\n" + config[first_route:]
    process = _haproxy(tmp_path, config)
    try:
        url = f"http://127.0.0.1:{port}"
        _until(f"{url}/readyz", 200)
        yield Shop(url, instance)
    finally:
        process.terminate()
        process.wait(10)
        server.shutdown()
        server.server_close()


def _is_problem(answer: httpx.Response, error: haproxy.Problem) -> None:
    assert answer.status_code == error.status
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json() == {
        "type": f"urn:bazaar:problem:{error.slug}",
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
    }


def _services_type(error: type[errors.BazaarError]) -> str:
    """The `type` a service's own problem of that error has."""
    return str(json.loads(problem(error.status, error.title, "", error.slug).content)["type"])


def _problem(status: int) -> haproxy.Problem:
    return next(p for p in haproxy.PROBLEMS if p.status == status)


def test_haproxy_gives_its_own_answers_a_new_request_id(shop: Shop) -> None:
    answers = {path: shop.get(path) for path in ("/healthz", "/readyz", "/metrics", "/v1/nope")}
    assert [a.status_code for a in answers.values()] == [200, 200, 200, 404]
    ids = [answer.headers["x-request-id"] for answer in answers.values()]
    assert all(GENERATED.match(request_id) for request_id in ids), ids
    assert len(set(ids)) == len(ids)
    _is_problem(answers["/v1/nope"], haproxy.NOT_FOUND)
    assert answers["/v1/nope"].json()["type"] == _services_type(errors.NotFound)
    assert shop.instance.seen == []  # HAProxy answered all of them by itself


def test_a_safe_client_id_is_echoed_and_the_instance_is_sent_it(shop: Shop) -> None:
    for path in ("/healthz", "/readyz", "/v1/nope"):
        answer = shop.get(path, headers={"X-Request-ID": "checkout:42.retry_1-a"})
        assert answer.headers["x-request-id"] == "checkout:42.retry_1-a"
    answer = shop.get("/v1/orders/o1", headers={"X-Request-ID": "A" * 128})
    assert answer.status_code == 200
    assert answer.headers["x-request-id"] == "A" * 128
    assert shop.instance.seen == [["A" * 128]]


def test_without_a_client_id_the_instance_is_sent_the_one_the_client_gets(shop: Shop) -> None:
    answers = [shop.get(path) for path in ("/v1/products", "/v1/auth/login", "/v1/payments/p1")]
    ids = [answer.headers["x-request-id"] for answer in answers]
    assert all(GENERATED.match(request_id) for request_id in ids), ids
    assert shop.instance.seen == [[request_id] for request_id in ids]


UNSAFE: list[str | bytes] = [
    "",
    "has space",
    "<script>alert(1)</script>",
    "a" * 129,
    "one,two",
    "quote'd",
    b"caf\xc3\xa9",
]


def test_an_unsafe_client_id_is_replaced_as_the_services_replace_it(shop: Shop) -> None:
    for sent in UNSAFE:
        text = sent.decode("latin-1") if isinstance(sent, bytes) else sent
        assert not _SAFE_REQUEST_ID.match(text), "a service would echo it"
        answer = shop.get("/v1/products", headers=[(b"X-Request-ID", sent)])
        given = answer.headers["x-request-id"]
        assert GENERATED.match(given), (sent, given)
        assert shop.instance.seen[-1] == [given]
        assert GENERATED.match(
            shop.get("/healthz", headers=[(b"X-Request-ID", sent)]).headers["x-request-id"]
        )


def test_of_several_client_ids_the_last_counts_as_for_the_services(shop: Shop) -> None:
    """A service reads the last `X-Request-ID`; HAProxy sends it exactly one."""
    answer = shop.get("/v1/cart", headers=[("X-Request-ID", "bad id"), ("X-Request-ID", "ok-1")])
    assert answer.headers["x-request-id"] == "ok-1"
    assert shop.instance.seen[-1] == ["ok-1"]
    answer = shop.get("/v1/cart", headers=[("X-Request-ID", "ok-1"), ("X-Request-ID", "bad id")])
    assert GENERATED.match(answer.headers["x-request-id"])
    assert shop.instance.seen[-1] == [answer.headers["x-request-id"]]


def test_an_instance_that_breaks_off_or_is_too_slow_gets_a_problem_with_the_id(
    shop: Shop,
) -> None:
    broken = shop.get("/v1/products/broken", headers={"X-Request-ID": "broken-1"})
    _is_problem(broken, _problem(502))
    assert broken.headers["x-request-id"] == "broken-1"
    assert broken.headers["retry-after"] == "1"
    started = time.monotonic()
    slow = shop.get("/v1/products/slow")
    assert time.monotonic() - started < SLOW_SECONDS
    _is_problem(slow, _problem(504))
    assert slow.headers["retry-after"] == "1"
    assert GENERATED.match(slow.headers["x-request-id"])
    assert shop.instance.seen == [["broken-1"], [slow.headers["x-request-id"]]]


def test_a_refusal_by_haproxy_is_the_services_problem_with_the_id(shop: Shop) -> None:
    limited = shop.get(LIMITED, headers={"X-Request-ID": "limited-1"})
    _is_problem(limited, _problem(429))
    assert limited.json()["type"] == _services_type(errors.RateLimited)
    assert limited.headers["retry-after"] == "1"  # as the services' 429 (API.md)
    assert limited.headers["x-request-id"] == "limited-1"
    refused = shop.get(REFUSED)
    _is_problem(refused, _problem(403))
    assert refused.json()["type"] == _services_type(errors.Forbidden)
    assert GENERATED.match(refused.headers["x-request-id"])
    assert shop.instance.seen == []


def test_every_problem_haproxy_may_answer_is_haproxys_to_quote_and_a_services_type() -> None:
    statuses = [p.status for p in haproxy.PROBLEMS]
    assert sorted(statuses) == statuses and len(set(statuses)) == len(statuses)
    assert {400, 403, 404, 429, 500, 502, 503, 504} <= set(statuses)
    for error in (errors.BadRequest, errors.NotFound, errors.Unavailable, errors.BazaarError):
        assert _problem(error.status).title == error.title
        assert f'"type":"{_services_type(error)}"' in _problem(error.status).body()
    assert all("'" not in p.body() for p in haproxy.PROBLEMS)


def test_without_instances_haproxy_answers_503_with_retry_after_and_the_id(
    tmp_path: Path,
) -> None:
    """No instance listens: HAProxy's own 503 says what and when to come back, as the
    services' own 503 do (a client retries both the same way), with the request's id."""
    if shutil.which("haproxy") is None:
        _unavailable("haproxy is not installed (see the README)")
    port = free_port()
    balancer = haproxy.Balancer(port, free_port(), tmp_path / "haproxy.sock")
    nobody = [Process(f"{s}-0", s, "serve", free_port()) for s in SERVICES]
    process = _haproxy(tmp_path, haproxy.render(balancer, nobody))
    try:
        url = f"http://127.0.0.1:{port}"
        ready = _until(f"{url}/readyz", 503)
        _is_problem(ready, haproxy.UNREADY)
        products = httpx.get(f"{url}/v1/products", headers={"X-Request-ID": "p-1"}, timeout=10)
        _is_problem(products, _problem(503))
        assert products.headers["x-request-id"] == "p-1"
        for answer in (ready, products):
            assert answer.json()["type"] == _services_type(errors.Unavailable)
            assert answer.headers["retry-after"] == "1"
        assert GENERATED.match(ready.headers["x-request-id"])
    finally:
        process.terminate()
        process.wait(10)
