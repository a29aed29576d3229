"""The HAProxy configuration of `bazaar up`, generated from the topology.

One frontend routes each path prefix to the service that owns it (its DEFINITION) and balances
over that service's instances (`leastconn`: a slow or restarting instance gets less). Each
instance is health-checked on `/readyz` every 500 ms and taken out after 2 failures (within
about a second), back after 1 success. A request whose connection failed is retried on another
instance (`retries 2`, `option redispatch`); one that got no answer at all (`empty-response`:
the instance died holding it) too, when replaying it is harmless: a method that is idempotent
by HTTP, or a request that carries an `Idempotency-Key`.

The balancer answers by itself `/healthz` (it runs), `/readyz` (200 while every service has at
least one instance in rotation, else 503), `/metrics` (its own Prometheus exporter: each
process's metrics are on its own port) and any path no service owns (404, problem+json).

Every answer carries `X-Request-ID`, its own too: the client's when it is safe, by the rule the
services apply (`SAFE_REQUEST_ID`), else one HAProxy makes as the services would (32 hex
digits). The instance is sent that id, so that its logs and its answer carry the same one.
HAProxy's own errors are the services' problems (`PROBLEMS`): same `type`, `title` and shape,
and `Retry-After` where trying again soon helps.
"""

from dataclasses import dataclass
from pathlib import Path

from bazaar.platform import errors
from bazaar.platform.problems import PROBLEM_JSON, problem
from bazaar.runtime.cluster.topology import Process
from bazaar.runtime.services import ROUTES, SERVICES

DOCUMENTS = ("/docs", "/openapi.json")
"""The API's documents: every API process serves the whole API's (every service's, merged:
runtime/documents.py); through the front door, catalog's."""
DOCUMENTS_SERVICE = "catalog"
CHECK_INTERVAL_MS = 500
FALL = 2
RISE = 1
SAFE_REQUEST_ID = r"^[A-Za-z0-9._:-]{1,128}$"
"""The `X-Request-ID` a client may choose, as the services take it (`platform/web.py`)."""
_NEW_REQUEST_ID = "uuid(4),regsub(-,,g)"
"""A request id as the services make one: 128 random bits (122 here) as 32 hex digits."""


@dataclass(frozen=True)
class Problem:
    """One of HAProxy's own error answers, in the shape and with the types of the services'."""

    status: int
    title: str
    slug: str
    detail: str
    retry_after: bool = False
    """`Retry-After: 1`, as the services' 503: the same request may well succeed then."""

    @classmethod
    def of(
        cls, error: type[errors.BazaarError], detail: str, retry_after: bool = False
    ) -> "Problem":
        return cls(error.status, error.title, error.slug, detail, retry_after)

    def body(self) -> str:
        """The services' own rendering; it must hold no `'`, HAProxy's quote."""
        text = problem(self.status, self.title, self.detail, self.slug).content.decode()
        if "'" in text:
            raise ValueError(f"HAProxy cannot quote this problem: {text}")
        return text

    def answer(self) -> str:
        """What follows `status N` in `http-error` and `http-request return`."""
        retry = " hdr retry-after 1" if self.retry_after else ""
        return f"content-type {PROBLEM_JSON} string '{self.body()}'{retry}"


NOT_FOUND = Problem.of(errors.NotFound, "No service serves this path")
UNREADY = Problem.of(errors.Unavailable, "A service has no instance in rotation", True)
PROBLEMS = (
    # what HAProxy answers before an instance could: a request it refuses, or one that broke
    Problem.of(errors.BadRequest, "The request is not valid HTTP"),
    Problem.of(errors.Forbidden, "The request was refused"),
    NOT_FOUND,
    Problem(408, "Request Timeout", "request-timeout", "The request did not arrive in time"),
    Problem.of(errors.PayloadTooLarge, "The request is too large"),
    Problem.of(errors.RateLimited, "Too many requests; retry shortly", True),
    Problem.of(errors.BazaarError, "The server could not answer this request"),
    Problem(501, "Not Implemented", "not-implemented", "The request uses an unsupported feature"),
    # what went wrong between HAProxy and an instance: a retry soon may find another
    Problem(502, "Bad Gateway", "bad-gateway", "The instance broke off its answer", True),
    Problem.of(
        errors.Unavailable, "No instance of the service is ready or free; retry shortly", True
    ),
    Problem(504, "Gateway Timeout", "gateway-timeout", "The instance did not answer in time", True),
)
"""Every status HAProxy itself may answer with, but 400 and 408 on a request it could not even
parse: those its HTTP/1 layer answers alone, with its built-in page and no request id."""


@dataclass(frozen=True)
class Balancer:
    port: int
    stats_port: int
    socket: Path
    """The stats socket (`show stat`, `disable server`), reachable by the owner only."""
    host: str = "127.0.0.1"


def render(balancer: Balancer, processes: list[Process]) -> str:
    lines = [
        "# Generated by `bazaar up`: edits are lost at the next start.",
        "global",
        "    log stderr format raw local0 notice",
        f"    stats socket {balancer.socket} mode 600 level admin",
        "    maxconn 4096",
        "",
        "defaults",
        "    mode http",
        "    log global",
        "    option dontlognull",
        "    timeout connect 1s",
        "    timeout client 30s",
        "    timeout server 30s",
        "    timeout http-request 10s",
        "    timeout http-keep-alive 10s",
        "    timeout queue 5s",
        "    timeout check 1s",
        "    retries 2",
        "    option redispatch 1",
        # A new client's first request may use an idle connection to an instance: with the
        # default (`safe`) each new client opened its own, and an instance under a small CPU
        # quota spent its share accepting them (p99 of 0.4-0.8 s against 44 ms, `bazaar bench`).
        # Safe for these servers: nothing is tied to a connection (no connection-based auth).
        "    http-reuse always",
        "    retry-on conn-failure empty-response",
        # HAProxy's own errors as the services' are: problem+json, and when to come back
        *(f"    http-error status {p.status} {p.answer()}" for p in PROBLEMS),
        "",
        "frontend api",
        f"    bind {balancer.host}:{balancer.port}",
        *_request_id(),
        "    acl replayable method GET HEAD PUT DELETE OPTIONS",
        "    acl keyed req.hdr(idempotency-key) -m found",
        "    http-request disable-l7-retry if !replayable !keyed",
        '    http-request return status 200 content-type text/plain string "ok" '
        "if { path /healthz }",
        "    http-request use-service prometheus-exporter if { path /metrics }",
        *_readiness(),
        *_service_acls(),
        f"    http-request return status 404 {NOT_FOUND.answer()}"
        f" if !{' !'.join(f'to_{s}' for s in SERVICES)}",
        *(f"    use_backend {service} if to_{service}" for service in SERVICES),
        "",
    ]
    for service in SERVICES:
        lines += _backend(service, [p for p in processes if p.service == service])
    lines += [
        "frontend stats",
        f"    bind {balancer.host}:{balancer.stats_port}",
        "    stats enable",
        "    stats uri /stats",
        "    stats refresh 2s",
        "    stats show-legends",
        "    http-request use-service prometheus-exporter if { path /metrics }",
        "",
    ]
    return "\n".join(lines)


def _request_id() -> list[str]:
    """The request's id, chosen before any rule answers: the client's last `X-Request-ID` (as
    the services read it) when safe, else a new one; the instance is sent exactly that one.
    It is HAProxy's unique id as well (`%ID` in a log format). An answer given before the
    rules ran (a request refused early) gets a new id at the end."""
    return [
        "    unique-id-format %[var(txn.request_id)]",
        "    http-request set-var(txn.request_id) req.fhdr(x-request-id)",
        f"    http-request set-var(txn.request_id) {_NEW_REQUEST_ID}"
        f" unless {{ var(txn.request_id) -m reg {SAFE_REQUEST_ID} }}",
        "    http-request set-header X-Request-ID %[var(txn.request_id)]",
        f"    http-after-response set-var(txn.request_id) {_NEW_REQUEST_ID}"
        " unless { var(txn.request_id) -m found }",
        "    http-after-response set-header X-Request-ID %[var(txn.request_id)]",
    ]


def _readiness() -> list[str]:
    lines = [f"    acl {s}_down nbsrv({s}) lt 1" for s in SERVICES]
    lines.append("    acl readyz path /readyz")
    unready = " || ".join(f"readyz {s}_down" for s in SERVICES)
    lines.append(f"    http-request return status 503 {UNREADY.answer()} if {unready}")
    lines.append(
        '    http-request return status 200 content-type text/plain string "ready" if readyz'
    )
    return lines


def _service_acls() -> list[str]:
    """A prefix owns itself and what lies below it (`/v1/orders`, `/v1/orders/...`), never
    a longer name (`/v1/ordersx`)."""
    lines = []
    for service in SERVICES:
        prefixes = ROUTES[service]
        lines.append(f"    acl to_{service} path {' '.join(prefixes)}")
        lines.append(f"    acl to_{service} path_beg {' '.join(p + '/' for p in prefixes)}")
    lines.append(f"    acl to_{DOCUMENTS_SERVICE} path {' '.join(DOCUMENTS)}")
    lines.append(f"    acl to_{DOCUMENTS_SERVICE} path_beg /docs/")  # its pages (/docs/swagger)
    return lines


def _backend(service: str, instances: list[Process]) -> list[str]:
    lines = [
        f"backend {service}",
        "    balance leastconn",
        "    option httpchk",
        "    http-check send meth GET uri /readyz",
        "    http-check expect status 200",
        f"    default-server check inter {CHECK_INTERVAL_MS}ms fastinter {CHECK_INTERVAL_MS}ms"
        f" downinter 1s fall {FALL} rise {RISE} maxconn 256",
    ]
    lines += [f"    server {p.name} 127.0.0.1:{p.port}" for p in instances if p.kind == "serve"]
    lines.append("")
    return lines


def admin(socket_path: Path, command: str, timeout: float = 2.0) -> str:
    """One command on HAProxy's stats socket (`show stat`, `set server B/S state drain`)."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(timeout)
        connection.connect(str(socket_path))
        connection.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


@dataclass(frozen=True)
class ServerView:
    """How HAProxy sees one backend server."""

    backend: str
    server: str
    status: str
    """UP, DOWN, MAINT, DRAIN, `UP 1/2` while rising, ..."""
    check: str
    """The last check's result and duration (`L7OK` 200 in 3 ms ...)."""
    sessions: int
    total: int
    """Requests it has taken since HAProxy started."""
    down_transitions: int


def server_views(socket_path: Path) -> list[ServerView]:
    import csv
    import io

    text = admin(socket_path, "show stat").lstrip("# ")
    views = []
    for row in csv.DictReader(io.StringIO(text)):
        if row["svname"] in ("FRONTEND", "BACKEND") or row["pxname"] not in SERVICES:
            continue
        views.append(
            ServerView(
                backend=row["pxname"],
                server=row["svname"],
                status=row["status"],
                check=f"{row['check_status']} {row['check_code']} {row['check_duration']}ms",
                sessions=int(row["scur"] or 0),
                total=int(row["stot"] or 0),
                down_transitions=int(row["chkdown"] or 0),
            )
        )
    return views


def set_state(socket_path: Path, backend: str, server: str, state: str) -> None:
    """`ready`, `drain` (no new request, those in flight finish) or `maint`."""
    answer = admin(socket_path, f"set server {backend}/{server} state {state}").strip()
    if answer:
        raise RuntimeError(f"HAProxy: {answer}")
