"""The admin listing merges every shard, newest first, with no gap or repeat between pages."""

import itertools
import random
from contextlib import AsyncExitStack
from datetime import datetime, timedelta

import httpx

from bazaar.orders import listing, service
from bazaar.orders.models import Order, OrderStatus
from bazaar.orders.service import Line
from bazaar.platform.clock import utcnow
from bazaar.platform.ids import new_id
from bazaar.platform.shards import ShardedDatabase
from bazaar.runtime.embedded import Runtime
from tests.e2e.checkout import ADDRESS
from tests.orders.conftest import PriceList
from tests.orders.test_api import keyed, order_body, product
from tests.plugin import admin, customer


async def store_orders(
    orders: ShardedDatabase, count: int, *, instants: int, customers: int = 12
) -> list[Order]:
    """`count` orders of several customers over both shards, written with only `instants`
    different creation times, so that many orders share their timestamp across shards."""
    start = utcnow()
    times = [start - timedelta(seconds=n) for n in range(instants)]
    people = [new_id() for _ in range(customers)]
    statuses = itertools.cycle([OrderStatus.PENDING, OrderStatus.CONFIRMED, OrderStatus.CANCELLED])
    stored = []
    for _ in range(count):
        customer_id = random.choice(people)
        created_at = random.choice(times)
        order = Order(
            id=orders.new_id(customer_id),
            customer_id=customer_id,
            status=next(statuses),
            cancel_reason=None,
            total_amount=100,
            currency="USD",
            payment_method="pm_card_visa",
            payment_id=None,
            shipping_address=ADDRESS,
            created_at=created_at,
            updated_at=created_at,
            items=[],
        )
        async with orders.for_customer(customer_id).write() as session:
            session.add(order)
        stored.append(order)
    return stored


def newest_first(orders: list[Order]) -> list[str]:
    return [o.id for o in sorted(orders, key=listing.newest_first, reverse=True)]


async def read_all(
    orders: ShardedDatabase, limit: int, **filters: str
) -> tuple[list[str], list[int]]:
    """Every page of the listing; the ids in order, and each page's size."""
    seen: list[str] = []
    sizes: list[int] = []
    after: tuple[datetime, str] | None = None
    while True:
        async with AsyncExitStack() as stack:
            sessions = [await stack.enter_async_context(s.read()) for s in orders.shards]
            found = await listing.list_all_orders(sessions, limit, after, **filters)
        page = found[:limit]
        seen += [order.id for order in page]
        sizes.append(len(page))
        if len(found) <= limit:
            return seen, sizes
        after = listing.newest_first(page[-1])


async def test_pages_across_shards_hold_every_order_once_even_with_equal_times(
    orders: ShardedDatabase,
) -> None:
    stored = await store_orders(orders, 41, instants=3)
    per_shard = [sum(orders.for_id(o.id) is shard for o in stored) for shard in orders.shards]
    assert all(count > 0 for count in per_shard), per_shard

    for limit in (1, 4, 7, 41, 100):
        seen, sizes = await read_all(orders, limit)
        assert seen == newest_first(stored), limit
        assert all(size == limit for size in sizes[:-1])


async def test_the_listing_filters_by_status_and_customer(orders: ShardedDatabase) -> None:
    stored = await store_orders(orders, 30, instants=2, customers=4)
    cancelled = [o for o in stored if o.status == OrderStatus.CANCELLED]
    seen, _ = await read_all(orders, 4, status=OrderStatus.CANCELLED)
    assert seen == newest_first(cancelled)
    someone = stored[0].customer_id
    theirs = [o for o in stored if o.customer_id == someone]
    seen, _ = await read_all(orders, 2, customer_id=someone)
    assert seen == newest_first(theirs)


async def test_the_listing_is_exact_with_placed_orders(
    orders: ShardedDatabase, prices: PriceList
) -> None:
    product_id = prices.sell(250)
    placed = []
    for customer_id in (new_id() for _ in range(10)):
        async with orders.for_customer(customer_id).write() as session:
            placed.append(
                await service.place_order(
                    session,
                    prices,
                    order_id=orders.new_id(customer_id),
                    customer_id=customer_id,
                    lines=[Line(product_id, 1)],
                    payment_method="pm_card_visa",
                    shipping_address=ADDRESS,
                )
            )
    seen, _ = await read_all(orders, 3)
    assert seen == newest_first(placed)


async def test_an_admin_pages_through_every_shard_over_http(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    boss = await admin(runtime, client)
    stored = await store_orders(runtime.platform.orders, 25, instants=3)
    engine = await product(client, boss)
    ada = await customer(client)
    body = order_body([{"product_id": engine, "quantity": 1}])
    placed = (await client.post("/v1/orders", json=body, headers=keyed(ada))).json()
    shards = runtime.platform.orders.shards
    assert {shards.index(runtime.platform.orders.for_id(o.id)) for o in stored} == {0, 1}

    seen: list[dict] = []
    cursor = None
    while True:
        query = {"limit": 4} | ({"cursor": cursor} if cursor else {})
        response = await client.get("/v1/admin/orders", params=query, headers=boss)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= 4
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [o["id"] for o in seen] == [placed["id"], *newest_first(stored)]
    assert seen[0]["customer_id"] == (await client.get("/v1/users/me", headers=ada)).json()["id"]
    assert seen[0]["total"] == placed["total"] and seen[0]["items"] == placed["items"]

    only_ada = await client.get(
        "/v1/admin/orders", params={"customer_id": seen[0]["customer_id"]}, headers=boss
    )
    assert [o["id"] for o in only_ada.json()["items"]] == [placed["id"]]
    confirmed = await client.get("/v1/admin/orders?status=confirmed&limit=100", headers=boss)
    # the placed order may be confirmed by now: the saga runs beside the test
    assert {o["id"] for o in confirmed.json()["items"]} - {placed["id"]} == {
        o.id for o in stored if o.status == OrderStatus.CONFIRMED
    }
    assert all(o["status"] == "confirmed" for o in confirmed.json()["items"])


async def test_the_admin_listing_refuses_customers_and_bad_queries(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    boss, ada = await admin(runtime, client), await customer(client)
    assert (await client.get("/v1/admin/orders")).status_code == 401
    refused = await client.get("/v1/admin/orders", headers=ada)
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    for query in (
        "limit=0",
        "limit=101",
        "status=lost",
        "cursor=bm9wZQ",
        "cursor=WyJ5ZXN0ZXJkYXkiLCJ4Il0",  # ["yesterday","x"]
        "cursor=WyIyMDI2LTAxLTAxVDAwOjAwOjAwIiwieCJd",  # a time without its zone
        f"customer_id={'x' * 37}",
    ):
        response = await client.get(f"/v1/admin/orders?{query}", headers=boss)
        assert response.status_code == 422, (query, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    empty = await client.get("/v1/admin/orders", headers=boss)
    assert empty.json() == {"items": [], "next_cursor": None}


async def test_openapi_documents_the_admin_listing(client: httpx.AsyncClient) -> None:
    operation = (await client.get("/openapi.json")).json()["paths"]["/v1/admin/orders"]["get"]
    names = {p["name"] for p in operation["parameters"]}
    assert names == {"limit", "cursor", "status", "customer_id"}
    assert {"401", "403", "422", "503"} <= operation["responses"].keys()
    refused = operation["responses"]["403"]["content"]
    assert refused["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}
