"""The HTTP edge: problem+json errors, request ids, body checks, health, metrics, docs."""

import asyncio
import re
import time

import httpx
from sqlalchemy import text

from bazaar.platform.web import BackgroundCheck
from bazaar.runtime.embedded import Runtime
from tests.plugin import admin


async def test_unknown_route_is_a_problem_with_a_request_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 404 and body["title"] and "type" in body and "detail" in body
    assert len(response.headers["x-request-id"]) >= 16


async def test_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "abc-123"


async def test_wrong_content_type_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/auth/register", content=b"email=a", headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 415
    assert response.json()["status"] == 415


async def test_body_over_one_mebibyte_is_413(client: httpx.AsyncClient) -> None:
    huge = b'{"email": "' + b"a" * (1024 * 1024 + 10) + b'"}'
    response = await client.post(
        "/v1/auth/register", content=huge, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"


async def test_errors_never_leak_internals(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/auth/login", json={"email": "x@example.com' OR 1=1 --", "password": "p" * 8}
    )
    assert response.status_code == 401
    text = response.text.lower()
    assert "traceback" not in text and "select" not in text and "sqlalchemy" not in text


async def test_bad_token_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/users/me", headers={"Authorization": "Bearer not.a.jwt"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_health_readiness_metrics_and_docs(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).status_code == 200
    await client.get("/v1/products")
    metrics = await client.get("/metrics")
    assert "bazaar_http_request_duration_seconds" in metrics.text
    spec = (await client.get("/openapi.json")).json()
    assert "/v1/auth/register" in spec["paths"]
    docs = await client.get("/docs")
    assert docs.status_code == 200 and "html" in docs.headers["content-type"]


async def test_a_database_that_does_not_answer_gives_503(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    identity = runtime.platform.databases["identity"]
    # hold the writer's only connection, so the next writer waits out a short pool timeout
    identity.primary.sync_engine.pool._timeout = 0.05
    async with identity.write() as session:
        await session.execute(text("SELECT 1"))
        response = await client.post(
            "/v1/auth/register",
            json={"email": "late@example.com", "password": "long enough", "name": "Late"},
        )
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["status"] == 503


async def test_metrics_content_type_names_its_charset_once(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")
    content_type = response.headers["content-type"]
    assert content_type.startswith("text/plain")
    assert content_type.lower().count("charset=") == 1


async def test_openapi_describes_every_error_as_a_problem(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    problem = spec["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    assert "errors" in problem["properties"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            errors = {code: r for code, r in responses.items() if int(code) >= 400}
            assert "503" in errors, (method, path)
            if operation.get("security"):
                assert "401" in errors, (method, path)
            if "application/json" in operation.get("requestBody", {}).get("content", {}):
                assert {"400", "413", "415", "422"} <= errors.keys(), (method, path)
            for code, response in errors.items():
                assert list(response["content"]) == ["application/problem+json"], (code, path)
    assert "422" in spec["paths"]["/v1/products"]["get"]["responses"]  # ?limit=
    assert "404" in spec["paths"]["/v1/products/{product_id}"]["get"]["responses"]
    assert "Retry-After" in spec["paths"]["/v1/auth/login"]["post"]["responses"]["429"]["headers"]


async def test_docs_page_shows_the_same_document(client: httpx.AsyncClient) -> None:
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "application/problem+json" in docs.text


async def test_an_empty_body_where_json_is_needed_is_400(client: httpx.AsyncClient) -> None:
    for headers in ({"Content-Type": "application/json"}, {}):
        response = await client.post("/v1/auth/register", content=b"", headers=headers)
        assert response.status_code == 400, response.text
        body = response.json()
        assert body["status"] == 400 and "errors" not in body
        assert response.headers["content-type"] == "application/problem+json"


async def test_an_empty_csv_import_is_400_and_no_token_is_401_first(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    csv = {"Content-Type": "text/csv"}
    anonymous = await client.post("/v1/products/import", content=b"", headers=csv)
    assert anonymous.status_code == 401, anonymous.text
    headers = {**await admin(runtime, client), **csv}
    empty = await client.post("/v1/products/import", content=b"", headers=headers)
    assert empty.status_code == 400, empty.text
    assert empty.headers["content-type"] == "application/problem+json"


async def test_options_allows_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    product = await client.options("/v1/products/some-id")
    assert product.status_code == 204
    assert product.headers["allow"] == "DELETE, GET, OPTIONS, PATCH"
    cart_item = await client.options("/v1/cart/items/some-id")
    assert cart_item.headers["allow"] == "DELETE, OPTIONS, PUT"


async def test_openapi_says_request_text_refuses_control_characters(
    client: httpx.AsyncClient,
) -> None:
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]
    register = schemas["RegisterRequest"]["properties"]
    for field in ("email", "password", "name"):
        assert not re.fullmatch(register[field]["pattern"], "ada\u0001@example.com"), field
    assert re.fullmatch(register["name"]["pattern"], "Ada\tLovelace")
    description = schemas["ProductUpdate"]["properties"]["description"]["oneOf"][0]
    assert re.fullmatch(description["pattern"], "Line one\nLine two")
    assert schemas["ProductUpdate"]["properties"]["stock"]["minimum"] == 0


async def test_a_body_of_the_wrong_json_type_is_422_at_the_body(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/v1/auth/register", json=[1, 2])
    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["errors"]] == [["body"]]


async def test_readiness_checks_run_in_the_background_at_most_every_max_age() -> None:
    calls = 0
    problem: str | None = None

    async def check() -> str | None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.2)  # a database busy serving requests
        return problem

    ready = BackgroundCheck([check], max_age=0.3)
    assert await ready() is None and calls == 1  # only the first answer waits
    problem = "database catalog: down"
    started = time.monotonic()
    answers = [await ready() for _ in range(20)]
    assert time.monotonic() - started < 0.1  # answered from the last result meanwhile
    assert answers == [None] * 20
    await asyncio.sleep(0.5)
    await ready()  # a new round started after max_age ...
    await asyncio.sleep(0.3)
    assert await ready() == "database catalog: down"  # ... and its result is the answer
    assert calls == 2
