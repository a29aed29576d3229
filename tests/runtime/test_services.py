"""The service list is each service's own definition: every path a service documents lies
under a prefix it declares (so HAProxy, which routes by those prefixes, sends it there), and
no prefix belongs to two services. Every service has the same modules, its settings among them.
Every event consumer is named for its service."""

import importlib
import re
from pathlib import Path

import pytest

from bazaar.platform.keys import KEY_FILE, load_or_create_key
from bazaar.runtime.config import Settings
from bazaar.runtime.documents import service_document
from bazaar.runtime.embedded import Runtime
from bazaar.runtime.services import DEFINITIONS, ROUTES, SERVICE_DATABASES, SERVICES
from tests.plugin import settings_for

CORE_MODULES = ("api", "schemas", "models", "service", "events", "handlers", "settings", "wiring")
"""Every service's own modules, besides its migrations (STYLE.md); a service may add others."""


def owner(path: str) -> list[str]:
    return [
        service
        for service, prefixes in ROUTES.items()
        if any(path == prefix or path.startswith(prefix + "/") for prefix in prefixes)
    ]


@pytest.mark.parametrize("service", SERVICES)
def test_every_documented_path_lies_under_its_own_prefixes(service: str) -> None:
    paths = service_document(service)["paths"]
    assert paths
    assert {path: owner(path) for path in paths} == {path: [service] for path in paths}


def test_the_list_of_services_and_their_databases_come_from_the_definitions() -> None:
    assert SERVICES == ("identity", "catalog", "orders", "payments", "notifications")
    assert [d.name for d in DEFINITIONS] == list(SERVICES)
    assert SERVICE_DATABASES == ("identity", "catalog", "payments", "notifications")
    prefixes = [prefix for routes in ROUTES.values() for prefix in routes]
    assert len(prefixes) == len(set(prefixes))


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_has_the_same_modules_and_its_own_settings(service: str) -> None:
    for module in CORE_MODULES:
        importlib.import_module(f"bazaar.{service}.{module}")
    package = importlib.import_module(f"bazaar.{service}")
    assert package.__file__ is not None
    assert (Path(package.__file__).parent / "migrations").is_dir()
    settings = Settings.from_env({})
    assert type(getattr(settings, service)).__module__ == f"bazaar.{service}.settings"


async def test_every_consumer_is_named_service_or_service_dot_purpose(tmp_path: Path) -> None:
    """`orders` when one queue serves several of the service's handlers, else
    `payments.capture_payment`; a name given up is retired for one the service still uses."""
    load_or_create_key(tmp_path / "data" / KEY_FILE)
    runtime = Runtime(settings_for(tmp_path / "data"))
    await runtime.stop()
    for part in runtime.parts:
        consumers = {subscription.consumer for subscription in part.subscriptions}
        named = re.compile(rf"{part.name}(\.[a-z]+(_[a-z]+)*)?")
        assert [c for c in consumers if not named.fullmatch(c)] == [], part.name
        assert set(part.retired_consumers.values()) <= consumers
        assert not set(part.retired_consumers) & consumers
    retired = {old for part in runtime.parts for old in part.retired_consumers}
    assert retired == {"notifications-webhooks"}
