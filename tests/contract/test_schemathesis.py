"""Schemathesis over the API's OpenAPI document: no 5xx, and every answer as documented.

The document that every process serves (the whole API's, merged from the services' own: what
clients read at the front door) drives requests, one test per service's tag, into the
embedded app, where all services answer, signed in: a customer, or an admin for the admin
routes. Examples are derandomized and bounded, so that CI runs the same cases in seconds.
"""

import asyncio
import tempfile
import time
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import BaseSchema, Case, CheckContext, Response
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from bazaar.catalog.api import IMPORT_HEADER
from bazaar.identity import service
from bazaar.identity.wiring import passwords
from bazaar.runtime.embedded import Runtime
from bazaar.runtime.services import SERVICES
from tests.plugin import settings_for

pytestmark = pytest.mark.filterwarnings(
    # The app runs in schemathesis's event-loop thread and draws request ids (`random`) while
    # Hypothesis generates the next case in this one: the shared state is not the strategies'.
    "ignore:Do not use the `random` module inside strategies"
    ":hypothesis.errors.HypothesisDeprecationWarning"
)

ADMIN = {"email": "admin@example.com", "password": "admin password", "name": "Admin"}
CUSTOMER = {"email": "ada@example.com", "password": "correct horse", "name": "Ada"}
PRODUCT = {
    "sku": "MUG-1",
    "name": "Mug",
    "category": "kitchen",
    "price": {"amount": 1250, "currency": "USD"},
    "stock": 1000,
}
ORDER = {
    "payment_method": "pm_card_visa",
    "shipping_address": {
        "name": "Ada",
        "line1": "1 Main St",
        "city": "Springfield",
        "postal_code": "12345",
        "country": "US",
    },
}

_FOLDER = tempfile.TemporaryDirectory(prefix="bazaar-contract-")
# Webhook hosts are made up: looking them up in DNS would make the run slow and flaky.
SETTINGS = settings_for(Path(_FOLDER.name) / "data", BAZAAR_WEBHOOK_ALLOW_PRIVATE="true")
APP = Runtime(SETTINGS).app()
"""Started by schemathesis's ASGI transport on its first request, stopped after each test."""

BEYOND_THE_SCHEMA = {
    ("query", "cursor"): "a cursor is opaque: only one that the API handed out is valid",
    ("query", "ids"): "`ids` is not combined with the other filters (no parameter says so)",
    ("body", "items", int, "product_id"): "an order line names a product on sale",
    ("body", "items"): "an order without `items` orders the cart, which may be empty",
    ("body", "items", int, "quantity"): "at most 100 of a product over the lines naming it",
    ("body", "url"): "a webhook URL names a host that webhooks may reach",
}
"""422s that a valid document cannot rule out: the field and why."""

NOT_CHECKED = {
    # A CSV body is text whatever it holds: an "invalid" body of schemathesis (a JSON object
    # where the schema says string) reaches the API as valid text, and a file that is not a
    # product CSV fails its job (API.md: the import is processed in the background).
    "POST /v1/products/import": [negative_data_rejection],
}
"""Checks left out for one operation, and why."""


def _schema() -> BaseSchema:
    document = asgi.get_client(APP).get("/openapi.json")
    schema = schemathesis.openapi.from_dict(document.json())
    schema.config.update(base_url=f"http://{asgi.HOST}")
    schema.app = APP
    return schema


SCHEMA = _schema()
SCHEMAS = {name: SCHEMA.include(tag=name) for name in SERVICES}


async def _create_admin() -> None:
    runtime = Runtime(SETTINGS)
    try:
        await runtime.migrate()
        async with runtime.platform.databases["identity"].write() as session:
            await service.register_user(
                session, passwords(runtime.settings.identity), **ADMIN, role="admin"
            )
    finally:
        await runtime.platform.close()


@dataclass(frozen=True)
class Shop:
    """Access tokens by role, and the ids of things that exist, made once for the module."""

    tokens: dict[str, str]
    ids: dict[str, str]


@pytest.fixture(scope="module")
def shop() -> Shop:
    asyncio.run(_create_admin())
    with asgi.get_client(APP) as client:
        assert client.post("/v1/auth/register", json=CUSTOMER).status_code == 201
        tokens = {}
        for role, user in (("admin", ADMIN), ("customer", CUSTOMER)):
            credentials = {"email": user["email"], "password": user["password"]}
            tokens[role] = client.post("/v1/auth/login", json=credentials).json()["access_token"]
        admin = {"Authorization": f"Bearer {tokens['admin']}"}
        customer = {"Authorization": f"Bearer {tokens['customer']}"}
        product = client.post("/v1/products", json=PRODUCT, headers=admin).json()
        job = client.post(
            "/v1/products/import",
            data=f"{IMPORT_HEADER}\nLAMP-1,Lamp,,lighting,4500,USD,3\n",
            headers={**admin, "Content-Type": "text/csv"},
        ).json()
        order = client.post(
            "/v1/orders",
            json={**ORDER, "items": [{"product_id": product["id"], "quantity": 1}]},
            headers={**customer, "Idempotency-Key": "contract-order"},
        ).json()
        for _ in range(100):  # settled in the background: a payment once confirmed
            order = client.get(f"/v1/orders/{order['id']}", headers=customer).json()
            if order["payment_id"] is not None:
                break
            time.sleep(0.05)
    ids = {
        "product_id": product["id"],
        "job_id": job["job_id"],
        "order_id": order["id"],
        "payment_id": order["payment_id"],
    }
    return Shop(tokens, ids)


def _beyond_the_schema(loc: list[str | int]) -> bool:
    return any(
        len(loc) == len(field)
        and all(
            part == want or (want is int and isinstance(part, int))
            for part, want in zip(loc, field, strict=True)
        )
        for field in BEYOND_THE_SCHEMA
    )


def accepts_valid_data(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Schemathesis's `positive_data_acceptance`, but for the 422s of BEYOND_THE_SCHEMA."""
    if response.status_code == 422:
        errors = response.json().get("errors") or [{"loc": []}]
        if all(_beyond_the_schema(error["loc"]) for error in errors):
            return None
    return positive_data_acceptance(ctx, response, case)


def _integers_as_ints(value: Any) -> Any:
    """JSON Schema counts `2.0` an integer, the contract (API.md) a float: 422, not an integer."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _integers_as_ints(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integers_as_ints(item) for item in value]
    return value


def _name_some_that_exist(case: Case, ids: dict[str, str]) -> None:
    """Half the ids of a valid case (chosen by the generated value, so that a failing example
    replays alike) name things that exist, so that more requests reach past a 404."""

    def existing(name: str, value: Any) -> Any:
        known = ids.get(name)
        chosen = known is not None and zlib.crc32(str(value).encode()) % 2 == 0
        return known if chosen else value

    for name, value in (case.path_parameters or {}).items():
        case.path_parameters[name] = existing(name, value)
    if isinstance(case.body, dict) and isinstance(case.body.get("items"), list):
        for line in case.body["items"]:
            if isinstance(line, dict) and "product_id" in line:
                line["product_id"] = existing("product_id", line["product_id"])


def exercise(case: Case, shop: Shop) -> None:
    """Send `case` signed in where it carries a token (an admin's for the admin routes), with a
    fresh Idempotency-Key where it is meant to be valid, and check the answer."""
    headers = case.headers if case.headers is not None else {}
    if "Authorization" in headers:
        summary = case.operation.definition.raw.get("summary", "")
        headers["Authorization"] = (
            f"Bearer {shop.tokens['admin' if '(admin)' in summary else 'customer']}"
        )
    positive = case.meta is not None and case.meta.generation.mode.is_positive
    if positive and "Idempotency-Key" in headers:
        headers["Idempotency-Key"] = str(uuid.uuid4())
    if case.body is not None:
        case.body = _integers_as_ints(case.body)
    if positive and case.method != "DELETE":  # what exists is kept for the other operations
        _name_some_that_exist(case, shop.ids)
    case.call_and_validate(
        excluded_checks=[positive_data_acceptance, *NOT_CHECKED.get(case.operation.label, [])],
        additional_checks=[accepts_valid_data],
    )


EXAMPLES = settings(
    max_examples=25,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@SCHEMAS["identity"].parametrize()
@EXAMPLES
def test_identity(case: Case, shop: Shop) -> None:
    exercise(case, shop)


@SCHEMAS["catalog"].parametrize()
@EXAMPLES
def test_catalog(case: Case, shop: Shop) -> None:
    exercise(case, shop)


@SCHEMAS["orders"].parametrize()
@EXAMPLES
def test_orders(case: Case, shop: Shop) -> None:
    exercise(case, shop)


@SCHEMAS["payments"].parametrize()
@EXAMPLES
def test_payments(case: Case, shop: Shop) -> None:
    exercise(case, shop)


@SCHEMAS["notifications"].parametrize()
@EXAMPLES
def test_notifications(case: Case, shop: Shop) -> None:
    exercise(case, shop)
