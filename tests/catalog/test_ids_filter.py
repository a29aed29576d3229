"""`GET /v1/products?ids=...`: the batch read through which orders quotes from another process."""

import httpx

from tests.e2e.checkout import create_product
from tests.plugin import admin


async def test_ids_give_the_products_on_sale_among_them(runtime, client: httpx.AsyncClient) -> None:
    headers = await admin(runtime, client)
    first, second, gone = [await create_product(client, headers, stock=3) for _ in range(3)]
    assert (await client.delete(f"/v1/products/{gone['id']}", headers=headers)).status_code == 204
    ids = ",".join([second["id"], "no-such-product", first["id"], gone["id"], first["id"]])
    response = await client.get("/v1/products", params={"ids": ids})
    assert response.status_code == 200, response.text
    page = response.json()
    assert [p["id"] for p in page["items"]] == sorted([first["id"], second["id"]])
    quoted = {product["id"]: product for product in page["items"]}[first["id"]]
    assert (quoted["name"], quoted["price"], quoted["stock"]) == (first["name"], first["price"], 3)
    assert page["next_cursor"] is None


async def test_more_than_a_hundred_ids_or_none_is_422(client: httpx.AsyncClient) -> None:
    for ids in (",".join(f"p{i}" for i in range(101)), " , "):
        response = await client.get("/v1/products", params={"ids": ids})
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["loc"] == ["query", "ids"]


async def test_ids_with_another_filter_is_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/products", params={"ids": "a,b", "category": "machines"})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
