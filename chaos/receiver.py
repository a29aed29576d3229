"""The shop's webhook receiver during a chaos run: an HTTP server on loopback that answers
every delivery 204 and counts what it received, by order and event type."""

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bazaar.runtime.cluster.topology import free_port


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    """The sender posts many at once: the default backlog (5) reset some of them."""


class Receiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.received: Counter[tuple[str, str]] = Counter()
        """(order id, event type) -> deliveries received."""
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                order_id = body["data"].get("order_id", "")
                with receiver._lock:
                    receiver.received[(order_id, self.headers["Bazaar-Event-Type"])] += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_args: object) -> None:  # quiet: the counts say it all
                pass

        self._server = _Server(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/bazaar"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def counts(self) -> Counter[tuple[str, str]]:
        with self._lock:
            return Counter(self.received)
