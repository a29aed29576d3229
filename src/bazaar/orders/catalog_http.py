"""Orders' window on catalog prices when the catalog runs elsewhere: its public HTTP API."""

import asyncio
from collections.abc import Collection

import httpx
import msgspec

from bazaar.orders.prices import Quote
from bazaar.orders.recent_quotes import RecentQuotes
from bazaar.platform.errors import Unavailable
from bazaar.platform.money import Money
from bazaar.platform.observability import log, request_id_var, traceparent_var

BATCH = 100
"""Ids per request: what catalog's `GET /v1/products?ids=` takes at most."""


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
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 2.0,
        recent_seconds: float = 0.0,
        max_connections: int = 50,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.timeout = timeout
        self.recent = RecentQuotes(recent_seconds)
        self._client = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 1.0), pool=min(timeout, 1.0)),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            transport=transport,
        )

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
        except (TimeoutError, httpx.HTTPError, msgspec.DecodeError) as error:
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
        if (traceparent := traceparent_var.get()) is not None:
            headers["traceparent"] = traceparent
        response = await self._client.get(
            "/v1/products", params={"ids": ",".join(ids)}, headers=headers
        )
        response.raise_for_status()
        return _decode_page(response.content).items

    async def close(self) -> None:
        await self._client.aclose()
