"""The webhook sender's HTTP transport: every connection goes to an address just checked.

httpx resolves names inside its connection pool, after any check a caller could make, so a
name that answered with a public address to the check could answer with a private one to the
connection (DNS rebinding). Here the pool's network backend resolves the host itself, checks
every address (webhook_targets.py) and connects to one of those very addresses; TLS still
verifies the certificate against, and sends SNI for, the URL's host name. A pooled keep-alive
connection was checked when it was opened.

Environment proxies are not used: a proxy would resolve the name again on its own.
"""

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from contextlib import contextmanager

import httpcore
import httpx

from bazaar.notifications.webhook_targets import checked_addresses


class CheckedNetwork(httpcore.AsyncNetworkBackend):
    """Opens TCP connections only to addresses webhooks may reach (see webhook_targets).

    A refused host raises webhook_targets.TargetRefused, which reaches the caller as it is; a
    host that does not resolve is a ConnectError, like a refused connection.
    """

    def __init__(self, *, allow_private: bool, resolve_timeout: float) -> None:
        self.allow_private = allow_private
        self.resolve_timeout = resolve_timeout
        self._network = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout or self.resolve_timeout):
                addresses = await checked_addresses(host, port, allow_private=self.allow_private)
        except (OSError, TimeoutError) as error:  # socket.gaierror is an OSError
            raise httpcore.ConnectError(f"could not resolve {host}: {error}") from error
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._network.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failure = error
        assert failure is not None  # checked_addresses never returns an empty list
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks are sent over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._network.sleep(seconds)


class CheckedTransport(httpx.AsyncBaseTransport):
    """An httpx transport over a connection pool on CheckedNetwork (no proxy, no redirects:
    following those is the client's business, and the sender's client does not)."""

    def __init__(self, *, allow_private: bool, resolve_timeout: float) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            network_backend=CheckedNetwork(
                allow_private=allow_private, resolve_timeout=resolve_timeout
            ),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = await self._pool.handle_async_request(core_request)
        assert isinstance(response.stream, AsyncIterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseBody(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


class _ResponseBody(httpx.AsyncByteStream):
    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            await close()


@contextmanager
def _httpx_errors() -> Iterator[None]:
    """httpcore's errors as the httpx errors of the same name (ConnectError, ReadTimeout...)."""
    try:
        yield
    except (
        httpcore.TimeoutException,
        httpcore.NetworkError,
        httpcore.ProtocolError,
        httpcore.UnsupportedProtocol,
    ) as error:
        kind = getattr(httpx, type(error).__name__, httpx.TransportError)
        raise kind(str(error)) from error
