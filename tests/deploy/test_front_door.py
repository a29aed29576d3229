"""The front door: the Ingress routes every path of the API to the service that owns it, and
nothing else; it lets CSV imports through and keeps other bodies small."""

import re

import pytest

from tests.deploy.conftest import REPOSITORY
from tests.deploy.manifests import CLUSTER_TARGETS, manifests, of_kind, route, routes

API_CONTRACT = REPOSITORY.parent / "shared" / "API.md"
EXPECTED_ROUTES = {
    "/v1/auth": "identity",
    "/v1/users": "identity",
    "/.well-known": "identity",
    "/v1/products": "catalog",
    "/v1/categories": "catalog",
    "/v1/jobs": "catalog",
    "/docs": "catalog",
    "/openapi.json": "catalog",
    "/v1/products/import": "catalog",
    "/v1/cart": "orders",
    "/v1/orders": "orders",
    "/v1/admin/orders": "orders",
    "/v1/payments": "payments",
    "/v1/notifications": "notifications",
    "/v1/webhooks": "notifications",
}
"""The front door's table, as HAProxy routes in `bazaar up` (README, "Routing")."""
UNROUTED = ("/healthz", "/readyz", "/metrics", "/", "/v1", "/v1/admin")
"""Each pod's own operations paths, and what no service owns: never sent to a service."""
CONTRACT_SECTIONS = {
    "Identity": "identity",
    "Catalog": "catalog",
    "Cart and orders": "orders",
    "Payments": "payments",
    "Notifications": "notifications",
}


@pytest.mark.parametrize("target", CLUSTER_TARGETS)
def test_the_ingress_routes_every_prefix_to_its_service(target: str) -> None:
    docs = manifests(target)
    table = routes(docs)
    assert {path for path, _ in table} == set(EXPECTED_ROUTES)
    for prefix, service in EXPECTED_ROUTES.items():
        assert route(docs, prefix) == service, prefix
        assert route(docs, f"{prefix}/some-id") == service or prefix in (
            "/openapi.json",
            "/v1/products/import",
        )
    for path in UNROUTED:
        assert route(docs, path) is None, f"{path} reaches a service"
    for ingress in of_kind(docs, "Ingress"):
        assert ingress["spec"]["ingressClassName"]


@pytest.mark.parametrize("target", CLUSTER_TARGETS)
def test_the_ingress_lets_imports_through_and_keeps_other_bodies_small(target: str) -> None:
    docs = manifests(target)

    def mebibytes(size: str) -> int:
        assert size.endswith("m"), size
        return int(size[:-1])

    limits = {}
    for ingress in of_kind(docs, "Ingress"):
        size = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                limits[path["path"]] = mebibytes(size)
    assert limits.pop("/v1/products/import") >= 50
    assert all(1 <= size < 50 for size in limits.values())


def contract_paths() -> list[tuple[str, str]]:
    """(path, owning service) of every path in API.md's tables, with `{id}` as a value."""
    if not API_CONTRACT.exists():
        pytest.skip(f"SKIPPED, NOT TESTED: the API contract is not at {API_CONTRACT}")
    found = []
    section = None
    for line in API_CONTRACT.read_text().splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
        for path in re.findall(r"(?:GET|POST|PUT|PATCH|DELETE) (/[^\s|`,]*)", line):
            concrete = re.sub(r"\{[^}]+\}", "an-id", path)
            if section in CONTRACT_SECTIONS:
                found.append((concrete, CONTRACT_SECTIONS[section]))
            elif concrete in ("/.well-known/jwks.json",):
                found.append((concrete, "identity"))
            elif concrete in ("/docs", "/openapi.json"):
                found.append((concrete, "catalog"))
        if section == "Operations" and line.startswith("| GET /docs"):
            found.append(("/openapi.json", "catalog"))
    assert len(found) > 20, "API.md's tables were not read"
    return found


@pytest.mark.parametrize("target", CLUSTER_TARGETS)
def test_the_ingress_routes_every_path_of_the_api_contract(target: str) -> None:
    docs = manifests(target)
    wrong = [
        f"{path}: {route(docs, path)}, not {service}"
        for path, service in contract_paths()
        if route(docs, path) != service
    ]
    assert not wrong, "\n".join(wrong)
