"""The service list is each service's own definition: every path a service documents lies
under a prefix it declares (so HAProxy, which routes by those prefixes, sends it there), and
no prefix belongs to two services."""

from pathlib import Path

import httpx
import pytest

from bazaar.platform.keys import KEY_FILE, load_or_create_key
from bazaar.runtime.embedded import Runtime
from bazaar.runtime.services import DEFINITIONS, ROUTES, SERVICE_DATABASES, SERVICES
from tests.plugin import settings_for

ANSWERED_BY_EVERY_PROCESS = ("/healthz", "/readyz", "/metrics", "/docs", "/openapi.json")


def owner(path: str) -> list[str]:
    return [
        service
        for service, prefixes in ROUTES.items()
        if any(path == prefix or path.startswith(prefix + "/") for prefix in prefixes)
    ]


@pytest.mark.parametrize("service", SERVICES)
async def test_every_documented_path_lies_under_its_own_prefixes(
    service: str, tmp_path: Path
) -> None:
    load_or_create_key(tmp_path / "data" / KEY_FILE)  # as `bazaar migrate` does first
    runtime = Runtime(settings_for(tmp_path / "data"), services=[service])
    transport = httpx.ASGITransport(app=runtime.app())
    async with httpx.AsyncClient(transport=transport, base_url="http://bazaar.test") as client:
        paths = (await client.get("/openapi.json")).json()["paths"]
    await runtime.stop()
    served = [p for p in paths if not p.startswith(ANSWERED_BY_EVERY_PROCESS)]
    assert served
    assert {path: owner(path) for path in served} == {path: [service] for path in served}


def test_the_list_of_services_and_their_databases_come_from_the_definitions() -> None:
    assert SERVICES == ("identity", "catalog", "orders", "payments", "notifications")
    assert [d.name for d in DEFINITIONS] == list(SERVICES)
    assert SERVICE_DATABASES == ("identity", "catalog", "payments", "notifications")
    prefixes = [prefix for routes in ROUTES.values() for prefix in routes]
    assert len(prefixes) == len(set(prefixes))
