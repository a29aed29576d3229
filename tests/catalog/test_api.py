"""Catalog over HTTP: one test per endpoint and error case."""

import asyncio
from datetime import datetime, timedelta

import httpx

from bazaar.catalog.events import ProductUpdated
from bazaar.platform.bus import RetryPolicy, deliver
from bazaar.platform.events import Envelope
from bazaar.runtime.embedded import Runtime
from tests.catalog.conftest import placed
from tests.plugin import admin, customer

HEADER = "sku,name,description,category,price_amount,currency,stock\n"


def product(sku: str = "MUG-1", **fields: object) -> dict:
    body = {
        "sku": sku,
        "name": "Blue mug",
        "description": "Holds tea.",
        "category": "kitchen",
        "price": {"amount": 1250, "currency": "USD"},
        "stock": 5,
    }
    return {**body, **fields}


async def create(client: httpx.AsyncClient, headers: dict, **fields: object) -> dict:
    response = await client.post("/v1/products", json=product(**fields), headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def test_an_admin_creates_a_product(runtime: Runtime, client: httpx.AsyncClient) -> None:
    created = await create(client, await admin(runtime, client))
    assert created["sku"] == "MUG-1" and created["price"] == {"amount": 1250, "currency": "USD"}
    assert created["stock"] == 5 and created["created_at"] == created["updated_at"]
    assert set(created) == {
        "id", "sku", "name", "description", "category", "price", "stock", "created_at",
        "updated_at",
    }  # fmt: skip
    fetched = await client.get(f"/v1/products/{created['id']}")
    assert fetched.json() == created


async def test_writes_need_a_token_and_the_admin_role(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    created = await create(client, await admin(runtime, client))
    path = f"/v1/products/{created['id']}"
    csv = {"content": HEADER, "headers": {"Content-Type": "text/csv"}}
    assert (await client.post("/v1/products", json=product("X"))).status_code == 401
    shopper = await customer(client)
    attempts = [
        client.post("/v1/products", json=product("X"), headers=shopper),
        client.patch(path, json={"stock": 1}, headers=shopper),
        client.delete(path, headers=shopper),
        client.post("/v1/products/import", content=HEADER, headers={**shopper, **csv["headers"]}),
        client.get("/v1/jobs/some-job", headers=shopper),
    ]
    for attempt in attempts:
        response = await attempt
        assert response.status_code == 403, response.text
        assert response.headers["content-type"] == "application/problem+json"


async def test_a_duplicate_sku_is_409(runtime: Runtime, client: httpx.AsyncClient) -> None:
    headers = await admin(runtime, client)
    await create(client, headers, sku="MUG-1")
    other = await create(client, headers, sku="MUG-2")
    again = await client.post("/v1/products", json=product("MUG-1"), headers=headers)
    assert again.status_code == 409 and again.json()["status"] == 409
    renamed = await client.patch(
        f"/v1/products/{other['id']}", json={"sku": "MUG-1"}, headers=headers
    )
    assert renamed.status_code == 409


async def test_invalid_fields_are_422(runtime: Runtime, client: httpx.AsyncClient) -> None:
    headers = await admin(runtime, client)
    for bad in (
        {"price": {"amount": -1, "currency": "USD"}},
        {"price": {"amount": 1.5, "currency": "USD"}},
        {"price": {"amount": 100, "currency": "usd"}},
        {"stock": -1},
        {"name": ""},
    ):
        response = await client.post("/v1/products", json=product(**bad), headers=headers)
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["errors"], response.text
    created = await create(client, headers)
    patched = await client.patch(
        f"/v1/products/{created['id']}", json={"stock": -3}, headers=headers
    )
    assert patched.status_code == 422


async def test_an_unknown_product_is_404(runtime: Runtime, client: httpx.AsyncClient) -> None:
    headers = await admin(runtime, client)
    path = "/v1/products/no-such-product"
    assert (await client.get(path)).status_code == 404
    assert (await client.patch(path, json={"stock": 1}, headers=headers)).status_code == 404
    assert (await client.delete(path, headers=headers)).status_code == 404


async def test_a_product_page_has_an_etag_and_answers_304(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    created = await create(client, await admin(runtime, client))
    path = f"/v1/products/{created['id']}"
    first = await client.get(path)
    etag = first.headers["etag"]
    assert etag.startswith('"') and first.headers["cache-control"].startswith("public, max-age=")
    cached = await client.get(path)
    assert cached.content == first.content and cached.headers["etag"] == etag
    unchanged = await client.get(path, headers={"If-None-Match": f'"other", {etag}'})
    assert unchanged.status_code == 304 and unchanged.content == b""
    assert unchanged.headers["etag"] == etag
    assert (await client.get(path, headers={"If-None-Match": '"other"'})).status_code == 200


async def test_a_get_right_after_a_patch_shows_the_change(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    headers = await admin(runtime, client)
    created = await create(client, headers)
    path = f"/v1/products/{created['id']}"
    before = await client.get(path)
    assert runtime.platform.response_cache.get(path) is not None  # the edge answers next time
    changes = {"name": "Red mug", "price": {"amount": 990, "currency": "EUR"}}
    patched = await client.patch(path, json=changes, headers=headers)
    assert patched.status_code == 200 and patched.json()["name"] == "Red mug"
    after = await client.get(path)
    assert after.json()["price"] == {"amount": 990, "currency": "EUR"}
    assert after.json()["description"] == "Holds tea."
    assert after.headers["etag"] != before.headers["etag"]


async def test_a_reservation_drops_the_cached_page(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    created = await create(client, await admin(runtime, client))
    path = f"/v1/products/{created['id']}"
    assert (await client.get(path)).json()["stock"] == 5
    reserve = subscription(runtime, "catalog.reserve_stock")
    envelope = Envelope.wrap(placed((created["id"], 2)))
    assert await deliver(reserve, envelope, RetryPolicy(attempts=1))
    await asyncio.sleep(0)  # the page is dropped by a task started at commit
    assert (await client.get(path)).json()["stock"] == 3


def subscription(runtime: Runtime, consumer: str):
    return next(s for part in runtime.parts for s in part.subscriptions if s.consumer == consumer)


async def test_a_product_changed_elsewhere_drops_the_cached_page(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    created = await create(client, await admin(runtime, client))
    path = f"/v1/products/{created['id']}"
    await client.get(path)
    assert runtime.platform.response_cache.get(path) is not None
    drop = subscription(runtime, "catalog.drop_product_page")
    later = datetime.fromisoformat(created["updated_at"]) + timedelta(microseconds=1)
    envelope = Envelope.wrap(ProductUpdated(product_id=created["id"], updated_at=later))
    assert await deliver(drop, envelope, RetryPolicy(attempts=1))
    assert runtime.platform.response_cache.get(path) is None
    assert await runtime.platform.cache.get(f"catalog:product:{created['id']}") is None


async def test_a_products_own_change_arriving_late_keeps_a_page_that_shows_it(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    """The broadcast of a change reaches an instance after it cached a page read after that
    change: the page is kept (on real servers it often arrives after the first GET)."""
    created = await create(client, await admin(runtime, client))
    path = f"/v1/products/{created['id']}"
    await client.get(path)
    drop = subscription(runtime, "catalog.drop_product_page")
    changed_at = datetime.fromisoformat(created["updated_at"])
    envelope = Envelope.wrap(ProductUpdated(product_id=created["id"], updated_at=changed_at))
    assert await deliver(drop, envelope, RetryPolicy(attempts=1))
    assert runtime.platform.response_cache.get(path) is not None
    assert await runtime.platform.cache.get(f"catalog:product:{created['id']}") is not None


async def test_a_deleted_product_is_gone(runtime: Runtime, client: httpx.AsyncClient) -> None:
    headers = await admin(runtime, client)
    created = await create(client, headers)
    path = f"/v1/products/{created['id']}"
    assert (await client.get(path)).status_code == 200
    deleted = await client.delete(path, headers=headers)
    assert deleted.status_code == 204 and deleted.content == b""
    assert (await client.get(path)).status_code == 404
    assert (await client.get("/v1/products")).json()["items"] == []


async def test_listing_pages_and_filters(runtime: Runtime, client: httpx.AsyncClient) -> None:
    headers = await admin(runtime, client)
    rows = [("Blue Mug", "kitchen"), ("Hammer", "tools"), ("Red mug", "kitchen"), ("Mug", "home")]
    made = [
        await create(client, headers, sku=f"S{n}", name=name, category=category)
        for n, (name, category) in enumerate(rows)
    ]
    first = (await client.get("/v1/products", params={"limit": 3})).json()
    rest = (
        await client.get("/v1/products", params={"limit": 3, "cursor": first["next_cursor"]})
    ).json()
    assert [p["id"] for p in first["items"] + rest["items"]] == [p["id"] for p in made]
    assert rest["next_cursor"] is None
    mugs = (await client.get("/v1/products", params={"q": "MUG", "category": "kitchen"})).json()
    assert [p["sku"] for p in mugs["items"]] == ["S0", "S2"]
    assert (await client.get("/v1/products", params={"limit": 0})).status_code == 422
    bad = await client.get("/v1/products", params={"cursor": "!!"})
    assert bad.status_code == 422


async def test_categories_count_live_products(runtime: Runtime, client: httpx.AsyncClient) -> None:
    headers = await admin(runtime, client)
    await create(client, headers, sku="A", category="kitchen")
    await create(client, headers, sku="B", category="kitchen")
    tool = await create(client, headers, sku="C", category="tools")
    await client.delete(f"/v1/products/{tool['id']}", headers=headers)
    response = await client.get("/v1/categories")
    assert response.json() == {"items": [{"name": "kitchen", "product_count": 2}]}


async def test_a_csv_import_is_processed_in_the_background(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    headers = await admin(runtime, client)
    csv = HEADER + "LAMP,Lamp,,home,1200,USD,2\nPEN,Pen,,office,cheap,USD,3\n"
    accepted = await client.post(
        "/v1/products/import", content=csv, headers={**headers, "Content-Type": "text/csv"}
    )
    assert accepted.status_code == 202, accepted.text
    job_path = f"/v1/jobs/{accepted.json()['job_id']}"
    for _ in range(50):
        job = (await client.get(job_path, headers=headers)).json()
        if job["status"] in ("succeeded", "failed"):
            break
        await asyncio.sleep(0.05)
    assert job["status"] == "succeeded" and job["kind"] == "product_import"
    assert job["progress"] == 1.0 and job["error"] is None
    assert job["result"]["created"] == 1 and job["result"]["errors"][0]["line"] == 3
    listed = (await client.get("/v1/products", params={"q": "lamp"})).json()["items"]
    assert [p["sku"] for p in listed] == ["LAMP"]


async def test_an_import_that_is_not_csv_is_415(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    headers = await admin(runtime, client)
    response = await client.post("/v1/products/import", json={"rows": []}, headers=headers)
    assert response.status_code == 415


async def test_an_unknown_job_is_404(runtime: Runtime, client: httpx.AsyncClient) -> None:
    headers = await admin(runtime, client)
    assert (await client.get("/v1/jobs/no-such-job", headers=headers)).status_code == 404


async def test_openapi_describes_the_csv_import_body(client: httpx.AsyncClient) -> None:
    operation = (await client.get("/openapi.json")).json()["paths"]["/v1/products/import"]["post"]
    body = operation["requestBody"]
    assert body["required"] is True and list(body["content"]) == ["text/csv"]
    assert HEADER.strip() in body["content"]["text/csv"]["schema"]["description"]
    assert {"401", "403", "413", "415"} <= operation["responses"].keys()


async def test_a_page_filled_at_the_edge_is_the_routes_answer(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    """A product page missed at the edge is read into the caches without the framework
    (`api.page_filler`); what it answers is what the route answers."""
    created = await create(client, await admin(runtime, client))
    path = f"/v1/products/{created['id']}"
    edge = runtime.platform.response_cache
    filled = await client.get(path)
    fillers = dict(edge._fillers)
    edge._fillers.clear()
    try:
        edge.clear()
        await runtime.platform.cache.clear()
        routed = await client.get(path)
    finally:
        edge._fillers.update(fillers)
    assert (filled.status_code, filled.content) == (routed.status_code, routed.content)
    for header in ("etag", "cache-control", "content-type", "content-length"):
        assert filled.headers[header] == routed.headers[header], header
    assert filled.json() == created
    # past the filler: a query string, and an unknown product, go to the route
    edge.clear()
    assert (await client.get(f"{path}?x=1")).json() == created
    missing = await client.get("/v1/products/no-such-product")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
