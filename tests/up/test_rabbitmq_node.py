"""`bazaar up`'s own RabbitMQ node, alone under supervisord in a temporary folder on free ports:
it carries messages, stops leaving none of its processes, and keeps a durable queue's messages
from one start to the next (beside the machine's node, which it never meets)."""

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aio_pika

from bazaar.runtime.cluster import supervisor as supervisor_config
from bazaar.runtime.cluster.rabbitmq_node import (
    CONTROL_SCRIPT,
    EPMD_GROUP,
    NODE_GROUP,
    RabbitNode,
    wait_for_node,
)
from bazaar.runtime.cluster.servers import State
from bazaar.runtime.cluster.supervisor import Layout, Supervisor, descendants, is_alive
from bazaar.runtime.cluster.topology import PortSource
from tests.scaled import _unavailable

KEPT = "bazaar.test.kept"


@contextmanager
def running(node: RabbitNode, root: Path, record: dict[str, list[int]]) -> Iterator[Supervisor]:
    """The node and its epmd under a supervisord of their own; on leaving, everything stopped:
    `record["ran"]` is every pid it ran, `record["left"]` those still alive 30 s after the stop
    (killed then)."""
    layout = Layout(root)
    node.prepare()
    layout.config.write_text(supervisor_config.render(layout, node.programs(), {}))
    supervisor = Supervisor(layout)
    pid = supervisor.launch({k: v for k, v in os.environ.items() if not k.startswith("BAZAAR_")})
    try:
        supervisor.start_group(EPMD_GROUP)
        supervisor.start_group(NODE_GROUP)
        wait_for_node(node, lambda: supervisor.last_lines("rabbitmq"))
        yield supervisor
    finally:
        pids = {pid, *descendants(pid)}
        supervisor.shutdown()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(is_alive(p) for p in pids):
            time.sleep(0.1)
        record["ran"] = sorted(pids)
        record["left"] = [p for p in pids if is_alive(p)]
        for left in record["left"]:
            os.kill(left, 9)


async def _round_trip(url: str) -> bytes:
    async with asyncio.timeout(30):
        connection = await aio_pika.connect(url, timeout=5)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue("bazaar.test.trip", exclusive=True)
            await channel.default_exchange.publish(aio_pika.Message(b"hello"), queue.name)
            async with queue.iterator() as messages:
                async for message in messages:
                    await message.ack()
                    return message.body
    raise AssertionError("no message came back")


async def _keep(url: str) -> int:
    """Publish one persistent message (confirmed) into a durable quorum queue, the kind the
    bus uses; return how many the queue holds."""
    async with asyncio.timeout(30):
        connection = await aio_pika.connect(url, timeout=5)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            await channel.declare_queue(KEPT, durable=True, arguments={"x-queue-type": "quorum"})
            message = aio_pika.Message(b"kept", delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
            await channel.default_exchange.publish(message, KEPT)
            queue = await channel.declare_queue(KEPT, passive=True)
            return queue.declaration_result.message_count


async def _take_kept(url: str) -> bytes | None:
    async with asyncio.timeout(30):
        connection = await aio_pika.connect(url, timeout=5)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(KEPT, passive=True)
            message = await queue.get(fail=False, timeout=5)
            if message is None:
                return None
            await message.ack()
            return message.body


def _queues_by_rabbitmqctl(node: RabbitNode) -> str:
    """`rabbitmqctl` beside the node: the same cookie, epmd and name reach it."""
    done = subprocess.run(
        [str(CONTROL_SCRIPT), "-n", node.name, "list_queues", "--quiet", "name", "durable"],
        env={"PATH": os.environ["PATH"], **node.environment()},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_own_node_carries_messages_stops_cleanly_and_keeps_its_data(tmp_path: Path) -> None:
    if shutil.which("supervisord") is None or not CONTROL_SCRIPT.exists():
        _unavailable("supervisord or rabbitmq-server is not installed (see the README)")
    ports = PortSource()
    node = RabbitNode(tmp_path / "rabbitmq", ports.take(), ports.take(), ports.take())
    first: dict[str, list[int]] = {}
    with running(node, tmp_path, first) as supervisor:
        assert {p.name: p.state for p in supervisor.programs()} == {
            "epmd": "RUNNING",
            "rabbitmq": "RUNNING",
        }
        assert asyncio.run(_round_trip(node.url)) == b"hello"
        assert asyncio.run(_keep(node.url)) == 1
        assert f"{KEPT}\ttrue" in _queues_by_rabbitmqctl(node)
    assert len(first["ran"]) >= 3  # epmd, RabbitMQ's script, the Erlang VM (and its helpers)
    assert first["left"] == []
    assert (tmp_path / "rabbitmq" / ".erlang.cookie").exists()
    second: dict[str, list[int]] = {}
    with running(node, tmp_path, second):
        assert asyncio.run(_take_kept(node.url)) == b"kept"
    assert second["left"] == []


def test_the_node_shares_nothing_with_the_machines_node(tmp_path: Path) -> None:
    node = RabbitNode(tmp_path, port=41001, dist_port=41002, epmd_port=41003)
    environment = node.environment()
    assert node.name == "bazaar-41001@localhost"
    assert environment["RABBITMQ_NODENAME"] == node.name
    assert environment["RABBITMQ_DIST_PORT"] == "41002"
    assert environment["ERL_EPMD_PORT"] == "41003"
    assert "-start_epmd false" in environment["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"]
    paths = [value for key, value in environment.items() if value.startswith("/")]
    assert len(paths) >= 8 and all(Path(p).is_relative_to(tmp_path) for p in paths)
    lines = node.configuration().splitlines()
    assert [line for line in lines if line.startswith("listeners.")] == [
        "listeners.tcp.1 = 127.0.0.1:41001"
    ]
    assert "loopback_users.guest = true" in lines
    epmd, server = node.programs()
    assert epmd.command[1:] == ["-port", "41003", "-address", "127.0.0.1"]
    assert (epmd.group, server.group) == (EPMD_GROUP, NODE_GROUP)


def test_the_kept_state_keeps_the_nodes_ports(tmp_path: Path) -> None:
    state = State()
    state.claim_ports(replicas=0, shards=1, ports=PortSource())
    state.save(tmp_path / "state.json")
    again = State.load(tmp_path / "state.json")
    again.claim_ports(replicas=0, shards=1, ports=PortSource())
    assert again.rabbit_node(tmp_path) == state.rabbit_node(tmp_path)
    ports = {state.broker_port, state.broker_dist_port, state.epmd_port}
    assert len(ports) == 3 and not ports & {state.redis_port, state.smtp_port}
