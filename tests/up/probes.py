"""What the tests watch an instance with while it stops: a slow upload, its readiness."""

import threading
import time
import uuid
from collections.abc import Iterator

from tests.up.running import status_of


def slow_csv(parts: int, pause: float) -> Iterator[bytes]:
    """A CSV import body that takes `parts * pause` seconds to send."""
    yield b"sku,name,description,category,price_amount,currency,stock\n"
    for _ in range(parts):
        time.sleep(pause)
        yield f"SLOW-{uuid.uuid4().hex[:10]},Slow,Sent slowly,machines,100,USD,1\n".encode()


class ReadinessProbe:
    """/readyz of one instance every 100 ms, each answer kept (0: nothing answered)."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/readyz"
        self.seen: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._probe, daemon=True)

    def _probe(self) -> None:
        while not self._stop.is_set():
            self.seen.append(status_of(self.url))
            time.sleep(0.1)

    def __enter__(self) -> "ReadinessProbe":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
