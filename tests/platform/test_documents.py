"""Merging services' documents: schemas named alike are kept once when alike, renamed per
service (references included) when not; a route or an operation id in two documents is refused.
"""

from typing import Any

import pytest
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from bazaar.platform.documents import describe, merge

TAGS = {"orders": "Orders.", "payments": "Payments."}


def _document(path: str, operation_id: str, schemas: dict[str, Any]) -> dict[str, Any]:
    reference = {"$ref": f"#/components/schemas/{next(iter(schemas))}"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "one", "version": "1.0.0"},
        "paths": {
            path: {
                "get": {
                    "operationId": operation_id,
                    "responses": {"200": {"content": {"application/json": {"schema": reference}}}},
                }
            }
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


MONEY = {"type": "object", "properties": {"amount": {"type": "integer"}}}
PRICE = {"type": "object", "properties": {"amount": {"type": "integer", "minimum": 0}}}


def _schema_of(document: dict[str, Any], path: str) -> str:
    response = document["paths"][path]["get"]["responses"]["200"]
    reference: str = response["content"]["application/json"]["schema"]["$ref"]
    return reference


def test_schemas_named_alike_with_different_contents_are_renamed_for_each_service() -> None:
    merged = merge(
        "Shop",
        {
            "orders": _document("/v1/orders", "listOrders", {"Money": MONEY}),
            "payments": _document("/v1/payments", "listPayments", {"Money": PRICE}),
        },
        TAGS,
    )
    schemas = merged["components"]["schemas"]
    assert schemas == {"OrdersMoney": MONEY, "PaymentsMoney": PRICE}
    assert _schema_of(merged, "/v1/orders") == "#/components/schemas/OrdersMoney"
    assert _schema_of(merged, "/v1/payments") == "#/components/schemas/PaymentsMoney"
    assert merged["tags"] == [
        {"name": "orders", "description": "Orders."},
        {"name": "payments", "description": "Payments."},
    ]
    assert merged["paths"]["/v1/payments"]["get"]["tags"] == ["payments"]


def test_schemas_named_alike_with_the_same_content_are_kept_once() -> None:
    merged = merge(
        "Shop",
        {
            "orders": _document("/v1/orders", "listOrders", {"Money": MONEY}),
            "payments": _document("/v1/payments", "listPayments", {"Money": MONEY}),
        },
        TAGS,
    )
    assert merged["components"]["schemas"] == {"Money": MONEY}
    assert _schema_of(merged, "/v1/payments") == "#/components/schemas/Money"
    assert list(merged["components"]["securitySchemes"]) == ["bearer"]


@pytest.mark.parametrize(
    ("second", "refusal"),
    [
        (_document("/v1/payments", "listOrders", {"Money": MONEY}), "operationId listOrders"),
        (_document("/v1/orders", "listPayments", {"Money": MONEY}), "GET /v1/orders"),
    ],
)
def test_an_operation_id_or_a_route_in_two_documents_is_refused(
    second: dict[str, Any], refusal: str
) -> None:
    first = _document("/v1/orders", "listOrders", {"Money": MONEY})
    with pytest.raises(ValueError, match=refusal):
        merge("Shop", {"orders": first, "payments": second}, TAGS)


Greeting = NamedDependency[str]


class GreetingController(Controller):
    path = "/v1/greetings"

    @get("/")
    async def list_greetings(self, greeting: Greeting) -> list[str]:
        return [greeting]

    @post("/")
    async def send_greeting(
        self, greeting: Greeting, data: JSONBody[dict[str, str]]
    ) -> dict[str, str]:
        return data


def test_routes_are_described_without_what_they_are_given() -> None:
    """No provider of `greeting` exists: the document needs none, as no request is served."""
    document = describe("Greetings", [GreetingController])
    item = document["paths"]["/v1/greetings"]
    assert (item["get"]["operationId"], item["post"]["operationId"]) == (
        "listGreetings",
        "sendGreeting",
    )
    assert "422" in item["post"]["responses"]  # problems documented as by every app
