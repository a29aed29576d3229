"""Every real server at once, as a production deployment has them: a PostgreSQL primary with a
streaming replica (tests/replication.py), the order shards on two servers (that primary and
the machine's PostgreSQL), Redis, and RabbitMQ in a virtual host of the run's own.
"""

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis
from sqlalchemy.engine import make_url

from tests.postgres import SERVER_URL
from tests.replication import ReplicatedServer

REDIS_URL = os.environ.get("BAZAAR_TEST_SCALED_REDIS_URL", "redis://127.0.0.1:6379/13")
"""A database of its own: each test empties it, so counters (rate limits) start from zero."""
BROKER_URL = os.environ.get("BAZAAR_TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")


@dataclass
class ScaledServers:
    postgres: ReplicatedServer
    broker_url: str

    def environment(self) -> dict[str, str]:
        """The settings of one test's Bazaar: databases of its own on every server, and an
        empty Redis database."""
        redis.Redis.from_url(REDIS_URL, socket_timeout=5).flushdb()
        name = f"bazaar_test_{uuid.uuid4().hex[:12]}"
        other_server = make_url(SERVER_URL).set(database=f"{name}_orders_1")
        return {
            "BAZAAR_DATABASE_URL": self.postgres.primary.url(name),
            "BAZAAR_REPLICA_URLS": self.postgres.replica.url(),
            "BAZAAR_ORDER_SHARD_URLS": ",".join(
                (
                    self.postgres.primary.url(f"{name}_orders_0"),
                    other_server.render_as_string(hide_password=False),
                )
            ),
            "BAZAAR_REDIS_URL": REDIS_URL,
            "BAZAAR_BROKER_URL": self.broker_url,
        }


def _rabbitmqctl(*arguments: str) -> None:
    try:
        done = subprocess.run(
            ["rabbitmqctl", *arguments], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        _unavailable(f"rabbitmqctl {arguments[0]} failed ({error})")
        return
    if done.returncode != 0:
        _unavailable(f"rabbitmqctl {arguments[0]} failed: {done.stderr.strip()}")


def _unavailable(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(f"SKIPPED, NOT TESTED: {message}")


def start_scaled_servers(postgres: ReplicatedServer) -> Iterator[ScaledServers]:
    """A RabbitMQ virtual host for the run (deleted at the end) beside the PostgreSQL pair."""
    vhost = f"bazaar-test-{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield ScaledServers(postgres, BROKER_URL.rstrip("/") + "/" + vhost)
    finally:
        _rabbitmqctl("delete_vhost", vhost)
