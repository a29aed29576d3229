"""What a person watches the shop by: every query of `bazaar top` and of the Grafana
dashboards (grafana.py), defined once here, and how they are read from Prometheus's HTTP API.

The queries use the labels every Bazaar series carries in `bazaar up` and on Kubernetes alike
(`job="bazaar"`, `service`; prometheus-rules.yml) and the recording rules where one exists. The
saga's figures are over 1 minute, written here, where the rules keep 5 minutes for the alerts:
a live view should follow a load that started a moment ago.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import httpx

from bazaar.runtime.services import SERVICES


class Unit(StrEnum):
    COUNT = "count"
    RATE = "rate"
    """A second."""
    SECONDS = "seconds"
    RATIO = "ratio"
    CORES = "cores"
    BYTES = "bytes"
    YES_NO = "yes_no"


@dataclass(frozen=True)
class Figure:
    """One query: a column of `bazaar top`, a panel of Grafana."""

    title: str
    """Short: a column's header."""
    name: str
    """What it is, in words: a panel's title."""
    expr: str
    unit: Unit


@dataclass(frozen=True)
class View:
    """Figures about one concern, each a vector keyed by the labels `by`."""

    title: str
    by: tuple[str, ...]
    figures: tuple[Figure, ...]


def _quantile(q: float, buckets: str, by: str = "") -> str:
    keys = f"{by}, le" if by else "le"
    return f"histogram_quantile({q}, sum by ({keys}) (rate({buckets}[1m])))"


PLACED = '{method="POST",route="/v1/orders",status="202"}'
"""The answers that placed an order."""
SERVICES_VIEW = View(
    "Services",
    ("service",),
    (
        Figure("up", "Processes up", 'sum by (service) (up{job="bazaar"})', Unit.COUNT),
        Figure("of", "Processes scraped", 'count by (service) (up{job="bazaar"})', Unit.COUNT),
        Figure("req/s", "Requests a second", "service:bazaar_http_requests:rate1m", Unit.RATE),
        Figure(
            "p50",
            "Request duration, median",
            "service:bazaar_http_request_duration_seconds:p50_1m",
            Unit.SECONDS,
        ),
        Figure(
            "p99",
            "Request duration, 99th percentile",
            "service:bazaar_http_request_duration_seconds:p99_1m",
            Unit.SECONDS,
        ),
        Figure("5xx/s", "Errors (5xx) a second", "service:bazaar_http_errors:rate1m", Unit.RATE),
        Figure(
            "5xx %",
            "Share of answers that were errors (5xx)",
            "service:bazaar_http_errors:rate1m / service:bazaar_http_requests:rate1m",
            Unit.RATIO,
        ),
        Figure(
            "CPU",
            "CPU used (cores)",
            'sum by (service) (rate(process_cpu_seconds_total{job="bazaar"}[1m]))',
            Unit.CORES,
        ),
    ),
)
SAGA_VIEW = View(
    "Checkout saga",
    (),
    (
        Figure(
            "placed/s",
            "Orders placed a second",
            f"sum(rate(bazaar_http_request_duration_seconds_count{PLACED}[1m]))",
            Unit.RATE,
        ),
        Figure(
            "settled/s",
            "Orders settled a second",
            "sum(rate(bazaar_order_settle_seconds_count[1m]))",
            Unit.RATE,
        ),
        Figure(
            "settle p50",
            "Placed to settled, median",
            _quantile(0.5, "bazaar_order_settle_seconds_bucket"),
            Unit.SECONDS,
        ),
        Figure(
            "settle p99",
            "Placed to settled, 99th percentile",
            _quantile(0.99, "bazaar_order_settle_seconds_bucket"),
            Unit.SECONDS,
        ),
        Figure(
            "place p99",
            "POST /v1/orders, 99th percentile",
            _quantile(0.99, f"bazaar_http_request_duration_seconds_bucket{PLACED}"),
            Unit.SECONDS,
        ),
    ),
)
OUTCOMES_VIEW = View(
    "Orders settled",
    ("outcome",),
    (
        Figure(
            "a second",
            "Orders settled a second, by outcome",
            "sum by (outcome) (rate(bazaar_checkout_outcomes_total[1m]))",
            Unit.RATE,
        ),
    ),
)
QUEUES_VIEW = View(
    "Queues",
    ("consumer",),
    (
        Figure(
            "ready",
            "Messages waiting in the queue",
            'max by (consumer) (bazaar_queue_messages{state="ready"})',
            Unit.COUNT,
        ),
        Figure(
            "dead",
            "Messages dead-lettered",
            'max by (consumer) (bazaar_queue_messages{state="dead"})',
            Unit.COUNT,
        ),
        Figure(
            "age",
            "Age of an event when handled",
            "max by (consumer) (bazaar_consumer_lag_seconds)",
            Unit.SECONDS,
        ),
        Figure(
            "events/s",
            "Events taken a second",
            "sum by (consumer) (rate(bazaar_events_handled_total[1m]))",
            Unit.RATE,
        ),
    ),
)
OUTBOX_VIEW = View(
    "Outbox",
    ("database",),
    (
        Figure(
            "backlog",
            "Events not yet published",
            "max by (database) (bazaar_outbox_backlog)",
            Unit.COUNT,
        ),
    ),
)
REPLICAS_VIEW = View(
    "Replicas",
    ("database", "replica"),
    (
        Figure(
            "lag",
            "Replica replay lag",
            "max by (database, replica) (bazaar_replica_lag_seconds)",
            Unit.SECONDS,
        ),
        Figure(
            "behind",
            "WAL not replayed yet",
            "max by (database, replica) (bazaar_replica_lag_bytes)",
            Unit.BYTES,
        ),
        Figure(
            "answers",
            "Replica answers",
            "min by (database, replica) (bazaar_replica_up)",
            Unit.YES_NO,
        ),
    ),
)
POOLS_VIEW = View(
    "Database pools",
    ("database",),
    (
        Figure(
            "in use",
            "Pool connections in use, every process",
            "sum by (database) (bazaar_db_pool_in_use)",
            Unit.COUNT,
        ),
        Figure(
            "of",
            "Pool capacity, every process",
            "sum by (database) (bazaar_db_pool_capacity)",
            Unit.COUNT,
        ),
        Figure(
            "busiest",
            "Saturation of the busiest process's pool",
            "max by (database) (instance_database:bazaar_db_pool_saturation:ratio)",
            Unit.RATIO,
        ),
    ),
)
VIEWS = (
    SERVICES_VIEW,
    SAGA_VIEW,
    OUTCOMES_VIEW,
    QUEUES_VIEW,
    OUTBOX_VIEW,
    REPLICAS_VIEW,
    POOLS_VIEW,
)
FIRING = 'ALERTS{alertstate="firing"}'
"""The alerts firing: a table in Grafana (`bazaar top` asks /api/v1/alerts, which has their
summaries)."""
ALL_QUERIES = (*(f.expr for view in VIEWS for f in view.figures), FIRING)


class PrometheusUnreachable(RuntimeError):
    """Prometheus does not answer, or not as Prometheus."""


Row = tuple[tuple[str, ...], list[float | None]]
"""A row of a view: its key (the values of `by`), then a value per figure (None: no series)."""


@dataclass(frozen=True)
class Alert:
    name: str
    state: str
    """`firing` or `pending` (its condition holds, not yet for its `for`)."""
    severity: str
    summary: str


@dataclass(frozen=True)
class Snapshot:
    """Every view's rows, and the alerts, at one moment."""

    rows: dict[str, list[Row]]
    errors: dict[str, str]
    """A view's query Prometheus refused, by the view's title."""
    alerts: list[Alert]


class QueryError(RuntimeError):
    """Prometheus refused a query (its `errorType: error`)."""


class Prometheus:
    """Prometheus's HTTP API: instant queries and the alerts."""

    def __init__(self, url: str, timeout: float = 2.0) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.Client(base_url=self.url, timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def _get(self, path: str, params: dict[str, str] | None = None) -> object:
        try:
            answer = self._client.get(path, params=params)
            body = answer.json()
        except (httpx.HTTPError, ValueError) as error:
            raise PrometheusUnreachable(
                f"Prometheus at {self.url} does not answer: {error}"
            ) from None
        if not isinstance(body, dict) or "status" not in body:
            raise PrometheusUnreachable(f"{self.url} does not answer as Prometheus does")
        if body["status"] != "success":
            raise QueryError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[tuple[dict[str, str], float]]:
        """An instant query's vector, each series' labels with its value."""
        data = self._get("/api/v1/query", {"query": expr})
        assert isinstance(data, dict)
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        return [(series["metric"], float(series["value"][1])) for series in data["result"]]

    def alerts(self) -> list[Alert]:
        data = self._get("/api/v1/alerts")
        assert isinstance(data, dict)
        found = [
            Alert(
                alert["labels"].get("alertname", "?"),
                alert["state"],
                alert["labels"].get("severity", ""),
                alert.get("annotations", {}).get("summary", ""),
            )
            for alert in data["alerts"]
        ]
        return sorted(found, key=lambda a: (a.state != "firing", a.severity != "critical", a.name))


def _order(key: tuple[str, ...]) -> tuple[int, tuple[str, ...]]:
    """The services in the saga's order first (identity ... notifications), then the rest."""
    first = key[0] if key else ""
    return (SERVICES.index(first) if first in SERVICES else len(SERVICES), key)


def read_view(
    view: View, query: Callable[[str], Sequence[tuple[dict[str, str], float]]]
) -> list[Row]:
    """The rows of `view`: one per key any of its figures has, a None where a figure has none
    (NaN, as a ratio over no request, counts as none)."""
    values: dict[tuple[str, ...], list[float | None]] = {}
    for position, figure in enumerate(view.figures):
        for labels, value in query(figure.expr):
            key = tuple(labels.get(label, "") for label in view.by)
            row = values.setdefault(key, [None] * len(view.figures))
            row[position] = None if math.isnan(value) else value
    return [(key, values[key]) for key in sorted(values, key=_order)]


def snapshot(prometheus: Prometheus) -> Snapshot:
    """Every view and the alerts now; PrometheusUnreachable when it does not answer."""
    rows: dict[str, list[Row]] = {}
    errors: dict[str, str] = {}
    for view in VIEWS:
        try:
            rows[view.title] = read_view(view, prometheus.query)
        except QueryError as error:
            rows[view.title] = []
            errors[view.title] = str(error)
    return Snapshot(rows, errors, prometheus.alerts())
