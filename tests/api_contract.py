"""The routes of the API contract (shared/API.md, beside the repository), to hold the API's
OpenAPI document to: each as (method, path), path parameters written `{}`."""

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tests.scaled import _unavailable

API_CONTRACT = Path(__file__).resolve().parents[2] / "shared" / "API.md"
OWN_TO_EACH_PROCESS = {"/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"}
"""Operations paths of every process (and of HAProxy), not routes of the API a client calls:
the API's document leaves them out."""
METHODS = ("get", "put", "post", "delete", "patch")


def template(path: str) -> str:
    """`path` with each parameter written `{}`: `/v1/orders/{id}` and `/v1/orders/{order_id}`
    are one route."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def contract_routes() -> set[tuple[str, str]]:
    """Every route in API.md's tables, but those OWN_TO_EACH_PROCESS."""
    if not API_CONTRACT.exists():
        _unavailable(f"the API contract is not at {API_CONTRACT}")
    routes = set()
    for line in API_CONTRACT.read_text().splitlines():
        if line.startswith("|"):
            for method, path in re.findall(r"\b(GET|POST|PUT|PATCH|DELETE) (/[^\s|`,]*)", line):
                if path not in OWN_TO_EACH_PROCESS:
                    routes.add((method, template(path)))
    assert len(routes) > 20, "API.md's tables were not read"
    return routes


def documented_routes(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), template(path))
        for path, item in document["paths"].items()
        for method in item
        if method in METHODS
    }


def missing_from(document: dict[str, Any], routes: Iterable[tuple[str, str]]) -> list[str]:
    """The routes that `document` does not describe, as `METHOD /path`."""
    documented = documented_routes(document)
    return sorted(f"{method} {path}" for method, path in routes if (method, path) not in documented)
