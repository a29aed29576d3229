"""The manifests follow the services' definitions (`bazaar.runtime.services.DEFINITIONS`):
every defined service, and no other, runs an API and a worker; the Ingress sends each
definition's prefixes to its service, and routes no path that no definition owns (the API's
documents aside, which go to catalog as HAProxy sends them in `bazaar up`)."""

import pytest

from bazaar.runtime.cluster.haproxy import DOCUMENTS, DOCUMENTS_SERVICE
from bazaar.runtime.services import DEFINITIONS
from tests.deploy.manifests import (
    CLUSTER_TARGETS,
    OVERLAYS,
    containers,
    manifests,
    of_kind,
    role,
    route,
    routes,
)


def owners(path: str) -> list[str]:
    """The services whose definition owns `path`: one of its prefixes, or a path below one."""
    return [
        definition.name
        for definition in DEFINITIONS
        if any(path == prefix or path.startswith(prefix + "/") for prefix in definition.routes)
    ]


@pytest.mark.parametrize("target", ("base", *OVERLAYS))
def test_every_defined_service_and_no_other_runs_an_api_and_a_worker(target: str) -> None:
    deployments = {
        workload["metadata"]["name"]: (role(workload), containers(workload)[0]["args"][:2])
        for workload in of_kind(manifests(target), "Deployment")
    }
    expected = {}
    for definition in DEFINITIONS:
        name = definition.name
        expected[name] = ((name, "api"), ["serve", name])
        expected[f"{name}-worker"] = ((name, "worker"), ["worker", name])
    assert deployments == expected


@pytest.mark.parametrize("target", CLUSTER_TARGETS)
def test_the_ingress_routes_each_definitions_prefixes_to_its_service(target: str) -> None:
    docs = manifests(target)
    for definition in DEFINITIONS:
        for prefix in definition.routes:
            assert route(docs, prefix) == definition.name, prefix
            assert route(docs, f"{prefix}/an-id") == definition.name, prefix


@pytest.mark.parametrize("target", CLUSTER_TARGETS)
def test_the_ingress_routes_no_path_that_no_definition_owns(target: str) -> None:
    wrong = []
    for (path, _), service in routes(manifests(target)).items():
        owning = [DOCUMENTS_SERVICE] if path in DOCUMENTS else owners(path)
        if owning != [service]:
            wrong.append(f"{path} goes to {service}, owned by {owning or 'no definition'}")
    assert not wrong, "\n".join(wrong)
