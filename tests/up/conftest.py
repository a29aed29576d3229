"""One `bazaar up --detach` for the tests of test_up.py and test_up_stops.py (started by the
first test that asks for it, brought down by the last, `test_down_leaves_no_process_behind`):
small (2 instances per service, 1 replica, 2 shards), on free ports in a data folder of its own
and a RabbitMQ virtual host of its own, every process exporting its spans to a receiver here.
"""

from collections.abc import Iterator

import httpx
import pytest

from bench.otlp import Receiver, otlp_receiver
from tests.up import shop
from tests.up.running import Running, prepared, start


@pytest.fixture(scope="package")
def traces() -> Iterator[tuple[Receiver, str]]:
    """A receiver of every span the topology's processes export (each process traces every
    request: no sampling), and its URL."""
    with otlp_receiver() as receiver_and_url:
        yield receiver_and_url


@pytest.fixture(scope="package")
def running(traces: tuple[Receiver, str]) -> Iterator[Running]:
    with prepared({"BAZAAR_OTLP_ENDPOINT": traces[1]}) as up:
        instances = "identity=2,catalog=2,orders=2,payments=2,notifications=2"
        started = start(up, instances, replicas=1, shards=2)
        assert started.returncode == 0, started.stdout + started.stderr
        up.recorded = up.run().pids
        yield up


@pytest.fixture(scope="package")
def admin(running: Running) -> dict[str, str]:
    with httpx.Client(base_url=running.base, timeout=10) as client:
        return shop.admin(running, client)
