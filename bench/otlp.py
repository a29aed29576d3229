"""A small OTLP/HTTP receiver standing in for a collector: it takes the spans exporters send to
`/v1/traces` (protobuf `ExportTraceServiceRequest`) on a loopback port. The bench's tracing
experiment runs one as its sink and counts what arrives; the tests run one and read the spans.
"""

import gzip
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

TICK_NS = 100_000_000
"""Spans are counted by the tenth of a second they started in."""


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_id: str | None
    service: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, Any] = field(hash=False)
    error: bool = False

    @property
    def milliseconds(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


class Receiver:
    """What the exporters sent. With `keep`, every span decoded (for a test to read); without,
    only counted, by when it started: a sink under load then costs the machine little."""

    def __init__(self, keep: bool = True) -> None:
        self.keep = keep
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self.received = 0
        """Spans received in all."""
        self._started: Counter[int] = Counter()
        self._lock = threading.Lock()

    def take(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        spans = []
        started: Counter[int] = Counter()
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes) if self.keep else {}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    started[span.start_time_unix_nano // TICK_NS] += 1
                    if self.keep:
                        spans.append(_received(span, resource))
        with self._lock:
            self.spans += spans
            self.requests += 1
            self.received += started.total()
            self._started.update(started)

    def started_between(self, start: float, end: float) -> int:
        """Spans received that started from `start` to `end` (seconds since the epoch, to a
        tenth): a measurement's, whenever its batches were exported."""
        first, last = int(start * 1e9) // TICK_NS, int(end * 1e9) // TICK_NS
        with self._lock:
            return sum(n for tick, n in self._started.items() if first <= tick <= last)

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self._lock:
            return sorted(
                (span for span in self.spans if span.trace_id == trace_id),
                key=lambda span: span.start_ns,
            )


def _received(span: Any, resource: dict[str, Any]) -> ReceivedSpan:
    return ReceivedSpan(
        name=span.name,
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_id=span.parent_span_id.hex() or None,
        service=str(resource.get("service.name")),
        kind=span.kind,
        start_ns=span.start_time_unix_nano,
        end_ns=span.end_time_unix_nano,
        attributes={**_attributes(span.attributes), "resource": resource},
        error=span.status.code == 2,
    )


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind is not None else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


@contextmanager
def otlp_receiver(keep: bool = True) -> Iterator[tuple[Receiver, str]]:
    """A receiver listening on a free loopback port, and its base URL (an exporter's
    `BAZAAR_OTLP_ENDPOINT`)."""
    receiver = Receiver(keep)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path != "/v1/traces":
                self.send_error(404)
                return
            receiver.take(body)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def tree(spans: list[ReceivedSpan]) -> str:
    """The spans of one trace as an indented tree, with their durations (for a person)."""
    children: dict[str | None, list[ReceivedSpan]] = {}
    ids = {span.span_id for span in spans}
    for span in spans:
        parent = span.parent_id if span.parent_id in ids else None
        children.setdefault(parent, []).append(span)
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: s.start_ns):
            label = f"{'  ' * depth}{span.name}"
            lines.append(f"{label:<72} {span.milliseconds:8.2f} ms  {span.service}")
            walk(span.span_id, depth + 1)

    walk(None, 0)
    return "\n".join(lines)
