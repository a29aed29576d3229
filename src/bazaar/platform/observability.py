"""Logs as JSON lines with request and trace ids, Prometheus metrics, W3C trace context."""

import random
from contextvars import ContextVar

import structlog
from prometheus_client import Counter, Gauge, Histogram

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
traceparent_var: ContextVar[str | None] = ContextVar("traceparent", default=None)

HTTP_LATENCY = Histogram(
    "bazaar_http_request_duration_seconds",
    "Time to answer an HTTP request, by route.",
    ["method", "route", "status"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
CACHE_REQUESTS = Counter(
    "bazaar_cache_requests_total", "Cache look-ups, by cache and result.", ["cache", "result"]
)
OUTBOX_BACKLOG = Gauge(
    "bazaar_outbox_backlog", "Outbox rows not yet published, by database.", ["database"]
)
JOBS_RUN = Counter(
    "bazaar_jobs_total",
    "Jobs run, by kind and outcome: done, retried, waited (a dependency briefly down), dead, "
    "lost (its lease ran out and another worker took it).",
    ["kind", "outcome"],
)
EVENTS_HANDLED = Counter(
    "bazaar_events_handled_total",
    "Events handled, by consumer and outcome: handled, duplicate, not_wanted (of no concern to "
    "the consumer: no webhook for its type), retried (a failure that spends the poison budget), "
    "waited (a dependency briefly down), dead_lettered.",
    ["consumer", "outcome"],
)
HOP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
EVENT_HANDLE_TIME = Histogram(
    "bazaar_event_handle_seconds",
    "Time to handle one event, its transaction and the record of its id included, by consumer "
    "and event type (a checkout's hops: on an idle process, their CPU time).",
    ["consumer", "event"],
    buckets=HOP_BUCKETS,
)
JOB_TIME = Histogram(
    "bazaar_job_seconds",
    "Time to run one job (an email's sending, a webhook's delivery), by kind.",
    ["kind"],
    buckets=HOP_BUCKETS,
)
CONSUMER_LAG = Gauge(
    "bazaar_consumer_lag_seconds",
    "Age of the last event a consumer handled when it handled it.",
    ["consumer"],
)
SAGA_OUTCOMES = Counter(
    "bazaar_checkout_outcomes_total", "Orders settled, by outcome.", ["outcome"]
)
SETTLE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 1, 2, 5, 10)
"""Seconds; 0.05 and 0.25 are issue 12's bounds (p50 when idle, p99 at half of peak)."""
SETTLE_TIME = Histogram(
    "bazaar_order_settle_seconds",
    "Time from placing an order to its confirmation or cancellation by the checkout saga.",
    ["outcome"],
    buckets=SETTLE_BUCKETS,
)
QUEUE_MESSAGES = Gauge(
    "bazaar_queue_messages",
    "Messages in a consumer's queue on the broker, by state: ready (waiting for the consumer) "
    "or dead (given up on, in its dead-letter queue); measured by the processes that consume it.",
    ["consumer", "state"],
)
DB_POOL_IN_USE = Gauge(
    "bazaar_db_pool_in_use",
    "Connections of a database's pool (its primary's) held by a transaction now.",
    ["database"],
)
DB_POOL_CAPACITY = Gauge(
    "bazaar_db_pool_capacity",
    "The most connections a database's pool (its primary's) opens; past it a caller waits.",
    ["database"],
)
DB_STATEMENTS = Counter(
    "bazaar_db_statements_total",
    "SQL statements sent, by database (on SQLite the BEGIN of each transaction as well).",
    ["database"],
)


_CACHE_HITS: dict[str, Counter] = {}


def record_cache_lookup(cache_name: str, *, hit: bool) -> None:
    """Count a cache look-up (the labelled child is kept: this runs on the hottest path)."""
    key = f"{cache_name}:{hit}"
    child = _CACHE_HITS.get(key)
    if child is None:
        child = _CACHE_HITS[key] = CACHE_REQUESTS.labels(cache_name, "hit" if hit else "miss")
    child.inc()


def new_traceparent() -> str:
    """A W3C traceparent for a trace that starts here: random ids from `random` (reseeded in
    each fork), not the system's, which cost a system call each on every request."""
    return f"00-{random.getrandbits(128):032x}-{random.getrandbits(64):016x}-01"


def child_traceparent(parent: str | None) -> str:
    """A traceparent for a new span under `parent` (same trace id), or a new trace."""
    parts = parent.split("-") if parent else []
    if len(parts) == 4 and len(parts[1]) == 32:
        return f"00-{parts[1]}-{random.getrandbits(64):016x}-{parts[3]}"
    return new_traceparent()


def configure_logging(
    level: str = "info", *, json: bool = True, service: str | None = None
) -> None:
    """JSON lines on stderr (or readable lines for a person at a terminal), the libraries'
    lines included: `bazaar.platform.logs`."""
    from bazaar.platform import logs  # it imports this module's context variables

    logs.configure(level, json=json, service=service)


log = structlog.get_logger("bazaar")
