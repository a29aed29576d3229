"""Every line a process writes: one JSON object (or one readable line for a person at a
terminal), whoever wrote it.

Bazaar's own events (structlog) and the records of the libraries under it (granian,
aio-pika and aiormq, asyncpg, SQLAlchemy, alembic, Python's warnings, an uncaught exception)
go through one handler on the root logger and one `ProcessorFormatter`, so they carry the same
fields: `timestamp`, `level`, `event`, `logger` (a library's), the process's `service`
(identity, catalog...; `all` for `bazaar dev`), `instance` (supervisord's name for it under
`bazaar up`, such as catalog-0, else host:port) and `pid` (granian's supervisor and its workers
share the instance), and inside a request or a consumed event its `request_id`, `trace_id`
and `span_id`.
"""

import logging
import os
import socket
import sys
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from bazaar.platform.observability import request_id_var, traceparent_var

QUIET_LOGGERS = (
    "sqlalchemy.engine",
    "sqlalchemy.pool",
    "aiosqlite",
    "httpx",
    "httpcore",
    "alembic.runtime.plugins",
)
"""Warnings only from these: their INFO (or DEBUG) is a line per statement or per call, or
(alembic's plugins) seven lines at every start that say nothing about the migrations."""
HANDLER_NAME = "bazaar"
ACCESS_LOG_FORMAT = '%(addr)s "%(method)s %(path)s %(protocol)s" %(status)d %(dt_ms).3f ms'
"""granian's access log (at the debug level): the line's own fields say when and which."""

_identity = {"service": "bazaar", "instance": socket.gethostname()}


def instance_name(port: int, environ: Mapping[str, str]) -> str:
    """supervisord's name of the program (`bazaar up`: catalog-0, orders-worker), else the
    host and port the process listens on."""
    return environ.get("SUPERVISOR_PROCESS_NAME") or f"{socket.gethostname()}:{port}"


def add_request_context(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    request_id = request_id_var.get()
    if request_id:
        event.setdefault("request_id", request_id)
    traceparent = traceparent_var.get()
    if traceparent:
        parts = traceparent.split("-")
        if len(parts) == 4:
            event.setdefault("trace_id", parts[1])
            event.setdefault("span_id", parts[2])
    return event


def _add_identity(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    event.setdefault("service", _identity["service"])
    event["instance"] = _identity["instance"]
    event["pid"] = os.getpid()
    return event


_SHARED: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    add_request_context,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]
"""Run when a line is written (in the writer's task, so the request's context is at hand)."""


def formatter(*, json: bool) -> structlog.stdlib.ProcessorFormatter:
    """The one formatter: structlog's events and every library's records, the same fields."""
    rendering: list[Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if json:
        rendering += [
            _add_identity,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ]
    else:  # a person at a terminal knows which process it is
        rendering.append(structlog.dev.ConsoleRenderer(colors=False))
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_SHARED, structlog.stdlib.add_logger_name],
        processors=rendering,
    )


def configure(
    level: str = "info",
    *,
    json: bool = True,
    service: str | None = None,
    instance: str | None = None,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Route every log line of this process through one handler on stderr (or `stream`),
    named `service` and `instance` (kept from an earlier call when not given); Python's
    warnings and uncaught exceptions as well. Safe to call again: the handler is replaced."""
    if service:
        _identity["service"] = service
    if instance:
        _identity["instance"] = instance
    numeric = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(formatter(json=json))
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread
    return handler


def granian_handler(
    level_name: str, json: bool, service: str, instance: str, stream: TextIO
) -> logging.Handler:
    """The handler of `granian_logging`'s configuration, made by `logging.config`."""
    return configure(level_name, json=json, service=service, instance=instance, stream=stream)


def granian_logging(level: str, *, json: bool, service: str, instance: str) -> dict[str, Any]:
    """granian's `log_dictconfig`: granian applies it in its own process and again in each
    worker it starts (forked or spawned), so that every line of either, its own included, is
    one of ours from the first."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {},
        "handlers": {
            HANDLER_NAME: {
                "()": f"{__name__}.granian_handler",
                "level_name": level,
                "json": json,
                "service": service,
                "instance": instance,
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": [HANDLER_NAME], "level": level.upper()},
        "loggers": {"_granian": {"propagate": True}, "granian.access": {"propagate": True}},
    }


def _log_uncaught(
    kind: type[BaseException], error: BaseException, traceback: TracebackType | None
) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, error, traceback)
        return
    structlog.get_logger("bazaar").critical("uncaught_exception", exc_info=(kind, error, traceback))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit or args.exc_value is None:
        return
    structlog.get_logger("bazaar").critical(
        "uncaught_exception",
        thread=args.thread.name if args.thread else None,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )
