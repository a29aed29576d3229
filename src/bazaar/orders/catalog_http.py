"""Orders' window on catalog prices when the catalog runs elsewhere: its public HTTP API."""

import asyncio
from collections.abc import Collection

import aiohttp
import msgspec

from bazaar.orders.prices import Quote
from bazaar.orders.recent_quotes import RecentQuotes
from bazaar.platform import tracing
from bazaar.platform.errors import Unavailable
from bazaar.platform.money import Money
from bazaar.platform.observability import log, request_id_var

BATCH = 100
"""Ids per request: what catalog's `GET /v1/products?ids=` takes at most."""
KEEP_ALIVE = 5.0
"""Seconds an idle connection is kept: under the idle timeouts of the servers and proxies in
front of the catalog (HAProxy's 10 s under `bazaar up`), so none is reused as it closes."""


class _Price(msgspec.Struct):
    amount: int
    currency: str


class _Product(msgspec.Struct):
    """The fields of catalog's product that a quote needs; the others are ignored."""

    id: str
    name: str
    price: _Price
    stock: int


class _Page(msgspec.Struct):
    items: list[_Product]


_decode_page = msgspec.json.Decoder(_Page).decode


class HttpCatalogPrices:
    """`CatalogPrices` through `GET /v1/products?ids=...` of the catalog service (or the load
    balancer in front of its instances).

    Every wait is bounded: a catalog that does not answer within `timeout` seconds, whose
    connection pool is exhausted, or that answers with an error, makes the caller's request
    a 503 with `Retry-After` (`Unavailable`), never a hang. The quotes it was given are kept
    `recent_seconds` for the carts it shows (`RecentQuotes`).

    The client is aiohttp's, its connections kept between requests: a cart shown or an order
    placed asks the catalog on its path, and httpx's client cost 1.0 ms of CPU a request
    where aiohttp's costs 0.16 (the same GET through HAProxy, 2,000 in a row).
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 2.0,
        recent_seconds: float = 0.0,
        max_connections: int = 50,
    ) -> None:
        self.timeout = timeout
        self.recent = RecentQuotes(recent_seconds)
        self._url = base_url.rstrip("/") + "/v1/products"
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        """The session, made on first use: in the event loop it runs on."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._max_connections, keepalive_timeout=KEEP_ALIVE
                ),
                timeout=aiohttp.ClientTimeout(
                    total=self.timeout, connect=min(self.timeout, 1.0)
                ),  # connect: a free connection of the pool, or a new one, within a second
                raise_for_status=True,
            )
        return self._session

    async def quote(
        self, product_ids: Collection[str], *, recent: bool = False
    ) -> dict[str, Quote]:
        if recent and self.recent.seconds > 0:
            return await self.recent.quote(product_ids, self._ask)
        return await self._ask(product_ids)

    async def _ask(self, product_ids: Collection[str]) -> dict[str, Quote]:
        ids = sorted(set(product_ids))
        if not ids:
            return {}
        batches = [ids[start : start + BATCH] for start in range(0, len(ids), BATCH)]
        try:
            async with asyncio.timeout(self.timeout):
                pages = await asyncio.gather(*(self._products(batch) for batch in batches))
        except (TimeoutError, aiohttp.ClientError, msgspec.DecodeError) as error:
            log.warning("catalog_unavailable", error_type=type(error).__name__, error=str(error))
            raise Unavailable("The catalog did not answer in time; retry shortly") from None
        return {
            product.id: Quote(
                product_id=product.id,
                name=product.name,
                unit_price=Money(product.price.amount, product.price.currency),
                stock=product.stock,
            )
            for page in pages
            for product in page
        }

    async def _products(self, ids: list[str]) -> list[_Product]:
        headers = {}
        if (request_id := request_id_var.get()) is not None:
            headers["X-Request-ID"] = request_id
        with tracing.calling("GET", self._url) as traceparent:
            if traceparent is not None:
                headers["traceparent"] = traceparent
            async with self._client().get(
                self._url, params={"ids": ",".join(ids)}, headers=headers
            ) as response:
                return _decode_page(await response.read()).items

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
