"""Every line a process writes is one JSON object naming its process, whoever wrote it: a
library's record routed through structlog's processors, Python's warnings, an uncaught
exception, granian's lines, and a whole `bazaar dev` from its start (alembic's migrations
included) to its stop, with a request's line carrying the request and trace ids it came with.
"""

import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import structlog

from bazaar.platform import logs
from bazaar.platform.observability import request_id_var, traceparent_var
from tests.plugin import FAST_ENV
from tests.replication import free_port

BAZAAR = str(Path(sys.executable).with_name("bazaar"))
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
FIELDS = {"timestamp", "level", "event", "service", "instance", "pid"}


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """Where `configure` writes in the test; the process's logging as it was afterwards."""
    root = logging.getLogger()
    handlers, level, identity = root.handlers[:], root.level, dict(logs._identity)
    quiet = {name: logging.getLogger(name).level for name in logs.QUIET_LOGGERS}
    hooks = sys.excepthook, threading.excepthook
    yield io.StringIO()
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, was in quiet.items():
        logging.getLogger(name).setLevel(was)
    logs._identity.update(identity)
    sys.excepthook, threading.excepthook = hooks
    logging.captureWarnings(False)
    structlog.reset_defaults()


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_a_library_record_is_a_json_line_with_its_logger_and_process(
    stream: io.StringIO,
) -> None:
    logs.configure("info", json=True, service="catalog", instance="catalog-0", stream=stream)
    logging.getLogger("aio_pika.robust_connection").warning(
        "Connection attempt to %r failed. Reconnecting after %r seconds.", "amqp://b/", 5
    )
    logging.getLogger("alembic.runtime.migration").debug("below the level: not written")

    [line] = lines(stream.getvalue())
    assert (
        line["event"] == "Connection attempt to 'amqp://b/' failed. Reconnecting after 5 seconds."
    )
    assert line["level"] == "warning"
    assert line["logger"] == "aio_pika.robust_connection"
    assert (line["service"], line["instance"], line["pid"]) == ("catalog", "catalog-0", os.getpid())
    assert line["timestamp"].endswith("Z")


def test_a_line_inside_a_request_carries_its_request_and_trace_ids(
    stream: io.StringIO,
) -> None:
    logs.configure("info", json=True, service="orders", instance="orders-1", stream=stream)
    request = request_id_var.set("req-42")
    trace = traceparent_var.set(f"00-{TRACE_ID}-b7ad6b7169203331-01")
    try:
        logging.getLogger("asyncpg").warning("a notice from the server")
        structlog.get_logger("bazaar").info("order_placed", order_id="o1")
    finally:
        request_id_var.reset(request)
        traceparent_var.reset(trace)
    logging.getLogger("asyncpg").warning("outside any request")

    library, own, outside = lines(stream.getvalue())
    for line in (library, own):
        assert (line["request_id"], line["trace_id"]) == ("req-42", TRACE_ID)
        assert line["span_id"] == "b7ad6b7169203331"
        assert line["service"] == "orders"
    assert (library["logger"], own["event"], own["order_id"]) == ("asyncpg", "order_placed", "o1")
    assert "request_id" not in outside and "trace_id" not in outside


def test_statements_are_not_logged_one_line_each(stream: io.StringIO) -> None:
    logs.configure("debug", json=True, stream=stream)
    logging.getLogger("sqlalchemy.engine.Engine").info("SELECT 1")
    logging.getLogger("sqlalchemy.engine.Engine").warning("a warning is kept")

    [line] = lines(stream.getvalue())
    assert line["event"] == "a warning is kept"


def test_at_a_terminal_a_library_line_is_readable_not_json(stream: io.StringIO) -> None:
    logs.configure("info", json=False, stream=stream)
    logging.getLogger("alembic.runtime.migration").info("Running upgrade  -> platform_0001")

    text = stream.getvalue()
    assert not text.startswith("{")
    assert "Running upgrade  -> platform_0001" in text
    assert "alembic.runtime.migration" in text and "info" in text


def test_the_instance_is_supervisords_name_else_host_and_port() -> None:
    assert logs.instance_name(8101, {"SUPERVISOR_PROCESS_NAME": "catalog-0"}) == "catalog-0"
    assert logs.instance_name(8101, {}) == f"{socket.gethostname()}:8101"


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_warnings_and_an_uncaught_exception_are_json_lines() -> None:
    done = run_python(
        "import warnings\n"
        "from bazaar.platform.logs import configure\n"
        "configure('info', json=True, service='payments', instance='payments-worker')\n"
        "warnings.warn('this setting is deprecated', UserWarning)\n"
        "raise RuntimeError('boom')\n"
    )

    assert done.returncode == 1 and done.stdout == ""
    warning, crash = lines(done.stderr)
    assert warning["logger"] == "py.warnings" and warning["level"] == "warning"
    assert "UserWarning: this setting is deprecated" in warning["event"]
    assert (crash["event"], crash["level"]) == ("uncaught_exception", "critical")
    assert crash["exception"].startswith("Traceback (most recent call last):")
    assert crash["exception"].rstrip().endswith("RuntimeError: boom")
    assert crash["service"] == warning["service"] == "payments"


def test_granians_configuration_makes_its_lines_ours() -> None:
    """What granian does with `log_dictconfig` in its process and in each worker."""
    done = run_python(
        "import logging\n"
        "from granian.log import LogLevels, configure_logging\n"
        "from bazaar.platform.logs import granian_logging\n"
        "config = granian_logging('info', json=True, service='identity', instance='identity-0')\n"
        "configure_logging(LogLevels.info, config)\n"
        "logging.getLogger('_granian').info('Started worker-1')\n"
        "logging.getLogger('granian.access').info('GET / 200')\n"
        "logging.getLogger('aiormq.connection').warning('Unexpected connection close')\n"
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    started, access, library = lines(done.stderr)
    assert (started["logger"], started["event"]) == ("_granian", "Started worker-1")
    assert access["logger"] == "granian.access" and library["logger"] == "aiormq.connection"
    for line in (started, access, library):
        assert line.keys() >= FIELDS
        assert (line["service"], line["instance"]) == ("identity", "identity-0")


def wait_ready(port: int, process: subprocess.Popen[bytes], bound: float = 60) -> None:
    deadline = time.monotonic() + bound
    while True:
        assert process.poll() is None, "bazaar dev exited at its start"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "bazaar dev did not become ready"
        time.sleep(0.2)


def test_every_line_of_a_running_process_is_json_with_its_ids(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        **FAST_ENV,
        "BAZAAR_DATA_DIR": str(tmp_path / "data"),  # fresh: every database is migrated
        "BAZAAR_LOG_JSON": "true",
        "BAZAAR_LOG_LEVEL": "debug",  # granian's access log: a line per request
        "SUPERVISOR_PROCESS_NAME": "dev-0",
    }
    for name in ("BAZAAR_DATABASE_URL", "BAZAAR_REDIS_URL", "BAZAAR_BROKER_URL"):
        env.pop(name, None)
    stdout, stderr = tmp_path / "stdout.log", tmp_path / "stderr.log"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [BAZAAR, "dev", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    try:
        wait_ready(port, process)
        response = httpx.get(
            f"http://127.0.0.1:{port}/v1/products?limit=1",
            headers={
                "X-Request-ID": "logs-test-1",
                "traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01",
            },
        )
        assert response.status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    written = lines(stdout.read_text()) + lines(stderr.read_text())
    for line in written:
        assert line.keys() >= FIELDS, line
        assert (line["service"], line["instance"]) == ("all", "dev-0"), line
    events = [(line.get("logger"), line["event"]) for line in written]
    assert ("_granian", f"Listening at: http://127.0.0.1:{port}") in events
    assert ("_granian.serve", "Started worker-1") in events  # from the worker, in Rust
    assert ("_granian", "Granian shutdown completed, see ya!") in events
    assert any(
        logger == "alembic.runtime.migration" and event.startswith("Running upgrade")
        for logger, event in events
    )
    assert (None, "bazaar_listening") in events and (None, "bazaar_stopped") in events
    [request] = [line for line in written if line.get("request_id") == "logs-test-1"]
    assert request["logger"] == "granian.access" and request["trace_id"] == TRACE_ID
    assert '"GET /v1/products HTTP/1.1" 200' in request["event"]
