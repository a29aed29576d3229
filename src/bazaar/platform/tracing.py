"""Traces with OpenTelemetry: one trace per checkout, across every service and hop.

Off unless `TracingSettings.endpoint` names an OTLP collector: then no SDK is set up, nothing
is instrumented, and each hook below costs one test of a module variable. On, a `Tracing`
(one per process, made by the runtime) exports spans by OTLP over HTTP/protobuf in batches,
from a thread of the SDK's, and makes:

- a server span per request, at the edge, outside the response cache (the maintained ASGI
  middleware; health, readiness and metrics are left out);
- a client span per SQL statement (the maintained SQLAlchemy engine tracer), per Redis call
  and per outgoing HTTP request (httpx's maintained instrumentation, and `calling`);
- a producer span per event the outbox relay publishes and a consumer span per event a
  consumer handles (`publishing`, `consuming`), and a span per job run (`running_job`).

The context crosses the outbox in the envelope: its `traceparent` is the span that wrote the
event (`current_traceparent`), and the consumer's span is that span's child, whatever the bus
(in-process or RabbitMQ) and however long the event waited. A job carries it the same way in
its row. So a `POST /v1/orders` and all it causes is one tree: the reservation's span under
the request's, the payment's under the reservation's, and so on down to the email.

A statement, cache call or HTTP call with no span above it (the relay's and job workers'
polling, replica probes) starts no trace: it is noise, and at every poll.
"""

import os
import random
import socket
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, cast

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes
from sqlalchemy.ext.asyncio import AsyncEngine

from bazaar.platform.db import Database
from bazaar.platform.observability import child_traceparent, request_id_var, traceparent_var
from bazaar.platform.settings import TracingSettings

if TYPE_CHECKING:
    from bazaar.platform.events import Envelope
    from bazaar.platform.jobs import Job

_UNTRACED_PATHS = "/healthz,/readyz,/metrics"
_propagator = TraceContextTextMapPropagator()
_NOTHING: AbstractContextManager[None] = nullcontext()
_active: "Tracing | None" = None
"""The process's tracing while it runs, for the hooks of the bus, the relay and the jobs."""


class Tracing:
    """A process's tracing: its SDK provider, its exporter and the libraries it instruments.

    `start` instruments, `shutdown` exports what is left and undoes it all (so a test may
    trace one runtime after another in one process). The provider is this object's, not the
    API's global one: every instrumentation is handed it.
    """

    def __init__(self, settings: TracingSettings, service: str, process: str) -> None:
        assert settings.endpoint is not None
        self.settings = settings
        resource = Resource.create(
            {
                "service.name": service,
                "service.namespace": "bazaar",
                "service.instance.id": str(uuid.uuid4()),
                "host.name": socket.gethostname(),
                "process.pid": os.getpid(),
                "bazaar.process": process,
            }
        )
        self.provider = TracerProvider(
            resource=resource, sampler=ParentBased(_Roots(settings.sample_ratio))
        )
        self.provider.add_span_processor(_SqliteFileNames())
        self.provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.endpoint, timeout=5))
        )
        self.tracer = self.provider.get_tracer("bazaar")
        self._engines: list[EngineTracer] = []

    def start(self, engines: Iterable[AsyncEngine]) -> None:
        global _active
        RedisInstrumentor().instrument(tracer_provider=self.provider)
        HTTPXClientInstrumentor().instrument(tracer_provider=self.provider)
        sql = self.provider.get_tracer("opentelemetry.instrumentation.sqlalchemy")
        usage = NoOpMeterProvider().get_meter("bazaar").create_up_down_counter("unused")
        self._engines = [
            EngineTracer(sql, engine.sync_engine, usage)  # type: ignore[no-untyped-call]
            for engine in engines
        ]
        _active = self

    def server(self, app: ASGIApp) -> ASGIApp:
        """`app` with a server span around each sampled request (see `_Sampling`)."""
        traced = OpenTelemetryMiddleware(
            _Correlated(app),
            excluded_urls=_UNTRACED_PATHS,
            default_span_details=_method_only,
            tracer_provider=self.provider,
            meter_provider=NoOpMeterProvider(),
            exclude_spans=["receive", "send"],
        )
        return _Sampling(cast(ASGIApp, traced), app, self.settings.sample_ratio)

    def shutdown(self) -> None:
        """Export the spans still buffered (bounded by the exporter's timeout), then undo."""
        global _active
        if _active is self:
            _active = None
        if self._engines:  # the listeners of every engine tracer are the class's
            EngineTracer.remove_all_event_listeners()  # type: ignore[no-untyped-call]
        self._engines = []
        RedisInstrumentor().uninstrument()
        HTTPXClientInstrumentor().uninstrument()
        self.provider.shutdown()

    @contextmanager
    def consuming(self, consumer: str, envelope: "Envelope") -> Iterator[None]:
        with self.tracer.start_as_current_span(
            f"{consumer} process {envelope.type}",
            context=_propagator.extract(envelope.trace),
            kind=SpanKind.CONSUMER,
            attributes=_message_attributes(envelope, "process", consumer),
        ) as span:
            traceparent_var.set(_traceparent(span.get_span_context()))
            yield

    @contextmanager
    def publishing(self, envelopes: Sequence["Envelope"]) -> Iterator[None]:
        spans = [
            self.tracer.start_span(
                f"publish {envelope.type}",
                context=_propagator.extract(envelope.trace),
                kind=SpanKind.PRODUCER,
                attributes=_message_attributes(envelope, "publish", None),
            )
            for envelope in envelopes
        ]
        try:
            yield
        except BaseException as error:
            for span in spans:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            raise
        finally:
            for span in spans:
                span.end()

    @contextmanager
    def calling(self, method: str, url: str) -> Iterator[str]:
        with self.tracer.start_as_current_span(
            method,
            kind=SpanKind.CLIENT,
            attributes={"http.request.method": method, "url.full": url},
        ) as span:
            yield _traceparent(span.get_span_context())

    @contextmanager
    def running_job(self, job: "Job") -> Iterator[None]:
        carrier = {"traceparent": job.traceparent} if job.traceparent else {}
        with self.tracer.start_as_current_span(
            f"job {job.kind}",
            context=_propagator.extract(carrier),
            kind=SpanKind.CONSUMER,
            attributes={
                "bazaar.job.kind": job.kind,
                "bazaar.job.id": job.id,
                "bazaar.job.attempt": job.attempts,
            },
        ) as span:
            traceparent_var.set(_traceparent(span.get_span_context()))
            yield


def start_tracing(
    settings: TracingSettings, service: str, process: str, databases: Iterable[Database]
) -> Tracing | None:
    """The process's tracing, started, with a span per statement on `databases`; None (and
    nothing set up) without an endpoint."""
    if settings.endpoint is None:
        return None
    tracing = Tracing(settings, service, process)
    tracing.start(database_engines(databases))
    return tracing


def database_engines(databases: Iterable[Database]) -> list[AsyncEngine]:
    engines: dict[int, AsyncEngine] = {}
    for db in databases:
        replicas = db.replicas.replicas if db.replicas is not None else ()
        for engine in (db.primary, db.reader, *(replica.engine for replica in replicas)):
            if engine is not None:
                engines[id(engine)] = engine
    return list(engines.values())


def active() -> Tracing | None:
    """The running process's tracing, if any."""
    return _active


def current_traceparent() -> str | None:
    """The W3C traceparent an event or a job written now carries: the current span's while
    tracing, else the request's or event's own (which only correlates the logs)."""
    if _active is not None:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            return _traceparent(context)
    return traceparent_var.get()


def consuming(consumer: str, envelope: "Envelope") -> AbstractContextManager[None]:
    """A consumer span around the handling of `envelope`, the child of the span that wrote it."""
    return _NOTHING if _active is None else _active.consuming(consumer, envelope)


def publishing(envelopes: Sequence["Envelope"]) -> AbstractContextManager[None]:
    """A producer span per envelope, each the child of the span that wrote it, around their
    publication (until the bus confirmed them)."""
    return _NOTHING if _active is None else _active.publishing(envelopes)


def calling(method: str, url: str) -> AbstractContextManager[str | None]:
    """A client span around an HTTP call to another service; what it gives is the
    `traceparent` the call sends (without tracing, the request's own, for the logs)."""
    if _active is None:
        return nullcontext(traceparent_var.get())
    return _active.calling(method, url)


def running_job(job: "Job") -> AbstractContextManager[None]:
    """A span around a job's run, the child of the span that queued it; without tracing, the
    queuing trace's id for the job's logs."""
    if _active is None:
        if job.traceparent:
            traceparent_var.set(child_traceparent(job.traceparent))
        return _NOTHING
    return _active.running_job(job)


class _Roots(Sampler):
    """Which traces start here: `ratio` of those begun by a request, an event or a job; none
    begun by a lone client call (a statement, cache or HTTP call with no span above it)."""

    def __init__(self, ratio: float) -> None:
        self._ratio = TraceIdRatioBased(ratio)

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[trace.Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        if kind is SpanKind.CLIENT:
            return SamplingResult(Decision.DROP)
        if kind is SpanKind.SERVER:  # `_Sampling` drew it at the edge
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)
        return self._ratio.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"BazaarRoots{{{self._ratio.get_description()}}}"


class _Sampling:
    """The sampling decision of a request, drawn before the ASGI middleware, which costs some
    70 µs a request even for a trace not sampled (more than a cached page itself): a request
    not sampled skips it, under a context that carries the decision (flags 00) downstream, to
    the services it calls and the events it writes."""

    def __init__(self, traced: ASGIApp, plain: ASGIApp, ratio: float) -> None:
        self.traced = traced
        self.plain = plain
        self.bound = round(ratio * _TRACE_ID_LOW)  # TraceIdRatioBased's rule

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.traced(scope, receive, send)
            return
        parent = None
        for name, value in scope["headers"]:
            if name == b"traceparent":
                carrier = {"traceparent": value.decode("latin-1")}
                parent = trace.get_current_span(_propagator.extract(carrier)).get_span_context()
        if parent is not None and parent.is_valid:
            trace_id, sampled = parent.trace_id, parent.trace_flags.sampled
        else:
            trace_id = random.getrandbits(128)
            sampled = (trace_id & _TRACE_ID_LOW) < self.bound
        if sampled:  # the middleware's server span, under the caller's span or a new trace
            await self.traced(scope, receive, send)
            return
        skipped = SpanContext(trace_id, random.getrandbits(64), False, TraceFlags(0))
        traceparent_var.set(_traceparent(skipped))
        token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(skipped)))
        try:
            await self.plain(scope, receive, send)
        finally:
            otel_context.detach(token)


_TRACE_ID_LOW = (1 << 64) - 1


class _SqliteFileNames(SpanProcessor):
    """A statement on SQLite named by its database (`SELECT catalog`), not by its file's path."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        operation, _, database = span.name.partition(" ")
        if database.endswith(".db") and "/" in database:
            span.update_name(f"{operation} {PurePath(database).stem}")


class _Correlated:
    """Inside the server span: the span's context for the logs and the events the request
    writes, and the span named by its route (not by its path, which holds ids) once routed,
    at the response's start (the middleware ends the span with the response's last byte)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        span = trace.get_current_span()
        traceparent_var.set(_traceparent(span.get_span_context()))
        if not span.is_recording():
            await self.app(scope, receive, send)
            return

        async def named(message: Message) -> None:
            if message["type"] == "http.response.start":
                route = scope.get("path_template")
                if route is not None:
                    span.update_name(f"{scope.get('method', 'HTTP')} {route}")
                    span.set_attribute("http.route", route)
                if (request_id := request_id_var.get()) is not None:
                    span.set_attribute("bazaar.request_id", request_id)
            await send(message)

        await self.app(scope, receive, named)


def _method_only(scope: Any) -> tuple[str, dict[str, Any]]:
    return str(scope.get("method", "HTTP")), {}


def _message_attributes(
    envelope: "Envelope", operation: str, consumer: str | None
) -> dict[str, str]:
    attributes = {
        "messaging.operation.name": operation,
        "messaging.destination.name": envelope.type,
        "messaging.message.id": envelope.id,
        "bazaar.event.source": envelope.source,
        "bazaar.event.key": envelope.key,
    }
    if consumer is not None:
        attributes["messaging.consumer.group.name"] = consumer
    return attributes


def _traceparent(context: SpanContext) -> str:
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
