"""An ASGI app served over real HTTP on a free loopback port, in the test's own event loop
(granian's embedded server): for a client that speaks HTTP itself, such as orders' aiohttp
client to the catalog, where httpx's in-process ASGI transport cannot stand in."""

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

from granian.constants import Interfaces
from granian.server.embed import Server
from litestar.types import ASGIApp

from bazaar.runtime.cluster.topology import free_port


@contextlib.asynccontextmanager
async def served(app: ASGIApp) -> AsyncIterator[str]:
    """`app`'s base URL while it is served (no lifespan: the app is started already)."""
    port = free_port()
    server = Server(app, port=port, interface=Interfaces.ASGINL, log_enabled=False)
    serving = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not _accepts(port):
                if serving.done():
                    serving.result()  # the server's own error
                await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        async with asyncio.timeout(10):
            await serving


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False
