"""Fault proxies: TCP relays between `bazaar up`'s processes and each server, that can cut,
slow or blackhole the connections on demand (`bazaar up --fault-proxies`, for `bazaar chaos`).

No Debian package does this (Toxiproxy is not packaged; `tc netem` on loopback would slow
the machine's own servers too), and the relay is small: one asyncio server per route, each
connection two pumps. A route is in one mode at a time:

- `pass`: bytes flow as they come;
- `slow`: each chunk waits `delay_ms` first (a congested or distant link);
- `blackhole`: nothing flows either way, new connections included, until the mode changes;
  what was sent meanwhile then arrives, as TCP retransmits it after a partition heals;
- `cut`: every open connection is reset, and new ones are reset as they arrive.

The control socket (a Unix socket beside the rest of `up`) takes one line per command,
`NAME MODE [DELAY_MS]`, and answers `ok` or `error: ...`.
"""

import asyncio
import contextlib
import signal
import socket
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args
from urllib.parse import urlsplit, urlunsplit

from bazaar.runtime.cluster.supervisor import Program


class FaultProxyError(RuntimeError):
    """The fault proxies did not start, or refused a command."""


Mode = Literal["pass", "slow", "blackhole", "cut"]
MODES: tuple[str, ...] = get_args(Mode)
CHUNK = 65536
PROXIED = {
    "BAZAAR_DATABASE_URL": "postgres",
    "BAZAAR_REPLICA_URLS": "replica",
    "BAZAAR_REDIS_URL": "redis",
    "BAZAAR_BROKER_URL": "rabbitmq",
}
"""The settings whose servers get a proxy, and the route names they get (replicas numbered)."""


@dataclass(frozen=True)
class RouteSpec:
    """`name` listens on `listen` and relays to `upstream` (both ports on 127.0.0.1)."""

    name: str
    listen: int
    upstream: int

    def __str__(self) -> str:
        return f"{self.name}={self.listen}:{self.upstream}"

    @classmethod
    def parse(cls, text: str) -> "RouteSpec":
        name, _, ports = text.partition("=")
        listen, _, upstream = ports.partition(":")
        return cls(name, int(listen), int(upstream))


@dataclass
class Route:
    spec: RouteSpec
    mode: Mode = "pass"
    delay: float = 0.0
    flowing: asyncio.Event = field(default_factory=asyncio.Event)
    open: set[asyncio.StreamWriter] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.flowing.set()

    def set(self, mode: Mode, delay_ms: int = 0) -> None:
        self.mode, self.delay = mode, delay_ms / 1000 if mode == "slow" else 0.0
        if mode == "blackhole":
            self.flowing.clear()
        else:
            self.flowing.set()
        if mode == "cut":
            for writer in list(self.open):
                _reset(writer)

    async def serve(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        if self.mode == "cut":
            _reset(client)
            return
        self.open.add(client)
        server: asyncio.StreamWriter | None = None
        try:
            await self.flowing.wait()
            reader, server = await asyncio.open_connection("127.0.0.1", self.spec.upstream)
            self.open.add(server)
            pumps = [
                asyncio.create_task(self._pump(client_reader, server)),
                asyncio.create_task(self._pump(reader, client)),
            ]
            _done, pending = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        except OSError:
            pass
        finally:
            for writer in (client, server):
                if writer is not None:
                    self.open.discard(writer)
                    writer.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(CHUNK):
                await self.flowing.wait()
                if self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(data)
                await writer.drain()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset, as a dropped link or a firewall's reject does."""
    transport = writer.transport
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def serve(specs: list[RouteSpec], control: Path) -> None:
    """Relay every route and take commands on `control` until SIGTERM or SIGINT."""
    routes = {spec.name: Route(spec) for spec in specs}
    servers = [
        await asyncio.start_server(route.serve, "127.0.0.1", route.spec.listen)
        for route in routes.values()
    ]

    async def command(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = (await reader.readline()).decode().split()
        writer.write((_apply(routes, line) + "\n").encode())
        await writer.drain()
        writer.close()

    servers.append(await asyncio.start_unix_server(command, str(control)))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for server in servers:
            server.close()
        for route in routes.values():
            route.set("cut")
        await asyncio.sleep(0.05)  # the connections' tasks end on the reset


def run_fault_proxies(specs: list[RouteSpec], control: Path) -> None:
    """The `bazaar faultproxy` program: serve until SIGTERM or SIGINT."""
    control.unlink(missing_ok=True)
    try:
        asyncio.run(serve(specs, control))
    finally:
        control.unlink(missing_ok=True)


def _apply(routes: dict[str, Route], words: list[str]) -> str:
    if len(words) not in (2, 3) or words[0] not in routes or words[1] not in MODES:
        return f"error: expected NAME MODE [DELAY_MS], NAME one of {', '.join(routes)}"
    try:
        delay = int(words[2]) if len(words) == 3 else 0
    except ValueError:
        return "error: DELAY_MS is a whole number"
    routes[words[0]].set(words[1], delay)  # type: ignore[arg-type]
    return "ok"


def set_mode(control: Path, name: str, mode: Mode, delay_ms: int = 0) -> None:
    """Ask the running proxies to put route `name` in `mode`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(control))
        sock.sendall(f"{name} {mode} {delay_ms}\n".encode())
        answer = sock.makefile().readline().strip()
    if answer != "ok":
        raise FaultProxyError(f"fault proxy: {answer or 'no answer'}")


def plan(
    environment: Mapping[str, str], take_port: Callable[[], int]
) -> tuple[list[RouteSpec], dict[str, str]]:
    """A route for each server on 127.0.0.1 that `environment` names, and the environment
    that reaches them through the routes instead."""
    routes: list[RouteSpec] = []
    through = dict(environment)
    for key, name in PROXIED.items():
        if not environment.get(key):
            continue
        urls = environment[key].split(",")
        rewritten = []
        for number, url in enumerate(urls, start=1):
            parts = urlsplit(url.strip())
            if parts.hostname not in ("127.0.0.1", "localhost") or parts.port is None:
                rewritten.append(url)
                continue
            route = RouteSpec(
                f"{name}-{number}" if key == "BAZAAR_REPLICA_URLS" else name,
                take_port(),
                parts.port,
            )
            routes.append(route)
            netloc = parts.netloc.rsplit(":", 1)[0] + f":{route.listen}"
            rewritten.append(urlunsplit(parts._replace(netloc=netloc)))
        through[key] = ",".join(rewritten)
    return routes, through


def program(bazaar: list[str], control: Path, routes: list[RouteSpec]) -> Program:
    """The program supervisord runs (with Redis and the mail sink, before the processes)."""
    command = [*bazaar, "faultproxy", "--control", str(control)]
    for route in routes:
        command += ["--route", str(route)]
    return Program("faultproxy", command, "servers", priority=8)


def wait_listening(control: Path, timeout: float = 30.0) -> None:
    """Until the control socket exists: the routes listen before it is made."""
    deadline = time.monotonic() + timeout
    while not control.exists():
        if time.monotonic() > deadline:
            raise FaultProxyError(f"the fault proxies did not start in {timeout:.0f} s")
        time.sleep(0.1)
