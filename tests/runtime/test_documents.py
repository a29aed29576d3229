"""The API's OpenAPI document: every service's merged, made from their routes, served by every
API process (so at the front door whichever instance answers); readable, unique operation ids;
valid OpenAPI; and a client generated from it expresses every operation but the CSV import."""

import re
from pathlib import Path

import httpx
import pytest
import schemathesis
from litestar.types import ASGIApp

from bazaar.platform.documents import operations
from bazaar.platform.keys import KEY_FILE, load_or_create_key
from bazaar.platform.web import create_app
from bazaar.runtime.config import ProcessKind, Settings
from bazaar.runtime.documents import api_document, service_document
from bazaar.runtime.embedded import Runtime
from bazaar.runtime.services import ROUTES, SERVICES
from tests.api_contract import contract_routes, missing_from
from tests.generated_client import generated
from tests.plugin import settings_for

NOT_EXPRESSED = ["POST /v1/products/import"]
"""What openapi-python-client cannot express: a `text/csv` request body (it knows JSON, forms,
multipart and binary bodies only)."""


def test_the_api_document_lists_every_route_of_the_api_contract() -> None:
    assert missing_from(api_document(), contract_routes()) == []


def test_operation_ids_are_unique_and_read_as_what_a_client_calls() -> None:
    ids = [operation["operationId"] for _, _, operation in operations(api_document())]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z]+(?:[A-Z][a-z]+)*", id_) for id_ in ids), ids
    by_route = {
        (method.upper(), path): operation["operationId"]
        for method, path, operation in operations(api_document())
    }
    assert by_route[("POST", "/v1/orders")] == "placeOrder"
    assert by_route[("GET", "/v1/orders/{order_id}")] == "getOrder"
    assert by_route[("GET", "/v1/products")] == "listProducts"
    assert by_route[("POST", "/v1/auth/register")] == "registerUser"
    assert by_route[("POST", "/v1/auth/login")] == "login"
    assert by_route[("PUT", "/v1/cart/items/{product_id}")] == "setCartItem"


def test_every_operation_is_tagged_with_the_service_that_answers_it() -> None:
    document = api_document()
    assert [tag["name"] for tag in document["tags"]] == list(SERVICES)
    assert all(tag["description"] for tag in document["tags"])
    for method, path, operation in operations(document):
        (service,) = [s for s, prefixes in ROUTES.items() if path.startswith(prefixes)]
        assert operation["tags"][0] == service, (method, path)
    assert {path for s in SERVICES for path in service_document(s)["paths"]} == set(
        document["paths"]
    )


async def test_each_service_document_is_what_its_own_app_publishes(tmp_path: Path) -> None:
    """Made from the routes alone, as any process can: the same as the app of the service's
    real routes (with their databases and keys) publishes."""
    runtime = Runtime(settings_for(tmp_path / "data"))
    try:
        for part in runtime.parts:
            title, verifier = f"Bazaar {part.name}", runtime.platform.verifier
            app = create_app(title=title, routers=[part.router], verifier=verifier)
            async with _client(app) as client:
                own = (await client.get("/openapi.json")).json()
            assert own == service_document(part.name), part.name
        assert {part.name for part in runtime.parts} == set(SERVICES)
    finally:
        await runtime.platform.close()


def test_the_api_document_is_valid_openapi() -> None:
    schema = schemathesis.openapi.from_dict(api_document())
    schema.validate()  # against the OpenAPI 3.1 meta-schema; raises what is wrong
    assert api_document()["openapi"].startswith("3.1")


@pytest.mark.parametrize("services", [["catalog"], ["orders"], list(SERVICES)])
async def test_every_api_process_serves_the_whole_api_document(
    services: list[str], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    load_or_create_key(data / KEY_FILE)  # as `bazaar migrate` does first
    runtime = Runtime(settings_for(data), services=services)
    try:
        async with _client(runtime.app()) as client:
            assert (await client.get("/openapi.json")).json() == api_document()
            assert (await client.get("/docs/openapi.json")).json() == api_document()
            page = await client.get("/docs")
    finally:
        await runtime.platform.close()
    assert page.status_code == 200 and "placeOrder" in page.text and "registerUser" in page.text


async def test_a_worker_documents_no_route(tmp_path: Path) -> None:
    data = tmp_path / "data"
    load_or_create_key(data / KEY_FILE)
    settings = Settings.from_env(
        {"BAZAAR_DATA_DIR": str(data), "BAZAAR_LOG_LEVEL": "warning"}, kind=ProcessKind.WORKER
    )
    runtime = Runtime(settings, services=["orders"])
    try:
        async with _client(runtime.app()) as client:
            document = (await client.get("/openapi.json")).json()
    finally:
        await runtime.platform.close()
    assert document["paths"] == {}


def test_a_generated_client_expresses_every_operation_but_the_csv_import(tmp_path: Path) -> None:
    with generated(api_document(), tmp_path) as client:
        assert client.left_out == NOT_EXPRESSED, client.output
        for _, _, operation in operations(api_document()):
            if operation["operationId"] != "importProducts":
                name = re.sub(r"([A-Z])", r"_\1", operation["operationId"]).lower()
                module = client.operation(operation["tags"][0], name)
                assert callable(module.sync_detailed), name


def _client(app: ASGIApp) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://bazaar.test")
