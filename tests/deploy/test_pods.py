"""What every pod promises: locked down, with limits and probes; the signing key in identity's
pods only; an API and a worker per service, each API behind a Service and a disruption
budget; graceful termination; spread over zones and nodes; found by Prometheus."""

import base64
import re
from typing import Any

import pytest

from bazaar.runtime.services import SERVICES
from tests.deploy.manifests import (
    API_PORT,
    CLUSTER_TARGETS,
    OVERLAYS,
    WORKER_PORT,
    bazaar_workloads,
    containers,
    manifests,
    named,
    of_kind,
    pod_spec,
    role,
    workloads,
)

DRAIN_SECONDS = 2
"""How long `bazaar serve` answers /readyz 503 after SIGTERM before it stops accepting."""
WORKER_STOP_SECONDS = 15
"""How long a worker waits for its running handlers after SIGTERM."""
LOCAL_PORTS = {name: (8101 + index, 9101 + index) for index, name in enumerate(SERVICES)}
"""Each service's (API, worker) port on the machine in the local overlay (host networking)."""
PRIVATE_KEY_SOURCES = {"bazaar-signing-key", "bazaar-dev-signing-key"}


def references_private_key(workload: dict[str, Any]) -> bool:
    """Whether any container or volume of the workload reaches the token-signing key."""

    def source(name: str | None) -> bool:
        return any(name == s or (name or "").startswith(f"{s}-") for s in PRIVATE_KEY_SOURCES)

    spec = pod_spec(workload)
    for container in containers(workload):
        for variable in container.get("env", []):
            ref = variable.get("valueFrom", {})
            key_ref = ref.get("secretKeyRef") or ref.get("configMapKeyRef") or {}
            if variable["name"] == "BAZAAR_JWT_PRIVATE_KEY" or source(key_ref.get("name")):
                return True
        for origin in container.get("envFrom", []):
            ref = origin.get("secretRef") or origin.get("configMapRef") or {}
            if source(ref.get("name")):
                return True
    for volume in spec.get("volumes", []):
        names = [
            (volume.get("secret") or {}).get("secretName"),
            (volume.get("configMap") or {}).get("name"),
            *[
                (s.get("secret") or s.get("configMap") or {}).get("name")
                for s in (volume.get("projected") or {}).get("sources", [])
            ],
        ]
        if any(source(name) for name in names):
            return True
    return False


@pytest.mark.parametrize("target", ("base", *OVERLAYS))
def test_every_container_has_limits_a_non_root_user_and_a_locked_down_security_context(
    target: str,
) -> None:
    problems = []
    for workload in workloads(manifests(target)):
        spec = pod_spec(workload)
        name = f"{workload['kind']}/{workload['metadata']['name']}"
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{name}: mounts a service account token")
        pod_security = spec.get("securityContext", {})
        for container in containers(workload):
            where = f"{name}/{container['name']}"
            resources = container.get("resources", {})
            for bound in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in resources.get(bound, {}):
                        problems.append(f"{where}: no {resource} {bound}")
            security = {**pod_security, **container.get("securityContext", {})}
            if security.get("runAsNonRoot") is not True or not security.get("runAsUser"):
                problems.append(f"{where}: may run as root")
            if container["name"] == "bazaar" and security.get("runAsUser") != 10001:
                problems.append(f"{where}: not the image's uid 10001")
            if container.get("securityContext", {}).get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: writable root file system")
            if container.get("securityContext", {}).get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: may escalate privileges")
            if "ALL" not in container.get("securityContext", {}).get("capabilities", {}).get(
                "drop", []
            ):
                problems.append(f"{where}: keeps capabilities")
            if security.get("seccompProfile", {}).get("type") != "RuntimeDefault":
                problems.append(f"{where}: no RuntimeDefault seccomp profile")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("target", CLUSTER_TARGETS)
def test_every_long_running_process_has_startup_readiness_and_liveness_probes(
    target: str,
) -> None:
    problems = []
    for workload in of_kind(manifests(target), "Deployment", "StatefulSet"):
        for container in containers(workload):
            for probe in ("readinessProbe", "livenessProbe"):
                if probe not in container:
                    problems.append(f"{workload['metadata']['name']}: no {probe}")
            if container["name"] == "bazaar":
                assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
                assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
                assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("target", ("base", *OVERLAYS))
def test_only_identitys_pods_get_the_signing_key(target: str) -> None:
    docs = manifests(target)
    holders = {
        f"{w['kind']}/{w['metadata']['name']}"
        for w in workloads(docs)
        if references_private_key(w)
    }  # fmt: skip
    assert holders == {"Deployment/identity", "Deployment/identity-worker"}
    for doc in of_kind(docs, "ConfigMap", "Secret"):
        if doc["metadata"]["name"].startswith(tuple(PRIVATE_KEY_SOURCES)):
            continue
        data = {**doc.get("data", {}), **doc.get("stringData", {})}
        assert "BAZAAR_JWT_PRIVATE_KEY" not in data, doc["metadata"]["name"]
        for value in data.values():
            text = base64.b64decode(value).decode() if doc["kind"] == "Secret" else value
            assert "PRIVATE KEY-----" not in text, f"a private key in {doc['metadata']['name']}"


@pytest.mark.parametrize("target", ("base", *OVERLAYS))
def test_every_process_verifies_with_the_public_keys_and_migrations_need_no_key(
    target: str,
) -> None:
    docs = manifests(target)
    for workload in bazaar_workloads(docs):
        container = containers(workload)[0]
        name = workload["metadata"]["name"]
        public = [v for v in container.get("env", []) if v["name"] == "BAZAAR_JWT_PUBLIC_KEYS"]
        if role(workload)[1] == "migrate":
            assert not public and not references_private_key(workload), name
            continue
        assert len(public) == 1, f"{name} gets no BAZAAR_JWT_PUBLIC_KEYS"
        ref = public[0]["valueFrom"]["configMapKeyRef"]
        assert ref["name"].startswith("bazaar-jwt-public-keys") and ref["key"] == "public.pem"


@pytest.mark.parametrize("target", ("base", *OVERLAYS))
def test_every_variable_reference_names_a_variable_defined_before_it(target: str) -> None:
    """Kubernetes expands $(NAME) only from the variables listed before; otherwise the URL
    keeps the literal text and the process fails at start."""
    for workload in workloads(manifests(target)):
        for container in containers(workload):
            defined: set[str] = set()
            for variable in container.get("env", []):
                for reference in re.findall(
                    r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", variable.get("value", "")
                ):
                    assert reference in defined, (
                        f"{workload['metadata']['name']}: {variable['name']} uses $({reference})"
                        " before it is defined"
                    )
                defined.add(variable["name"])
            for argument in container.get("args", []):
                for reference in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", argument):
                    assert reference in defined, f"{workload['metadata']['name']}: $({reference})"


@pytest.mark.parametrize("target", ("base", *OVERLAYS))
def test_each_service_runs_an_api_and_a_worker(target: str) -> None:
    docs = manifests(target)
    local = target == "local"
    for service in SERVICES:
        for deployment, kind in ((service, "serve"), (f"{service}-worker", "worker")):
            workload = named(docs, "Deployment", deployment)
            arguments = containers(workload)[0]["args"]
            assert arguments[:2] == [kind, service]
            api_port, worker_port = LOCAL_PORTS[service] if local else (API_PORT, WORKER_PORT)
            port = api_port if kind == "serve" else worker_port
            assert arguments[arguments.index("--port") + 1] == str(port)
            assert arguments[arguments.index("--host") + 1] == ("127.0.0.1" if local else "0.0.0.0")
    assert len(of_kind(docs, "Deployment")) == 2 * len(SERVICES)


@pytest.mark.parametrize("target", CLUSTER_TARGETS)
def test_every_api_has_a_service_and_a_disruption_budget(target: str) -> None:
    docs = manifests(target)
    for service in SERVICES:
        pods = named(docs, "Deployment", service)["spec"]["template"]["metadata"]["labels"]
        front = named(docs, "Service", service)
        assert front["spec"]["ports"][0]["port"] == API_PORT
        assert front["spec"]["selector"].items() <= pods.items()
        budget = named(docs, "PodDisruptionBudget", service)["spec"]
        assert budget["selector"]["matchLabels"].items() <= pods.items()
        assert budget.get("maxUnavailable") == 1 or budget.get("minAvailable") == 1
        worker = named(docs, "Deployment", f"{service}-worker")
        metrics = named(docs, "Service", f"{service}-worker")
        labels = worker["spec"]["template"]["metadata"]["labels"]
        assert metrics["spec"]["selector"].items() <= labels.items()


@pytest.mark.parametrize("target", CLUSTER_TARGETS)
def test_stopping_pods_drain_before_they_stop(target: str) -> None:
    for workload in bazaar_workloads(manifests(target)):
        _, component = role(workload)
        spec = pod_spec(workload)
        grace = spec.get("terminationGracePeriodSeconds", 30)
        name = workload["metadata"]["name"]
        if component == "api":
            sleep = containers(workload)[0]["lifecycle"]["preStop"]["exec"]["command"]
            assert sleep[0] == "sleep" and int(sleep[1]) >= 3, name
            assert grace >= int(sleep[1]) + DRAIN_SECONDS + 10, name
            readiness = containers(workload)[0]["readinessProbe"]
            assert readiness["periodSeconds"] * readiness["failureThreshold"] <= 10, name
        elif component == "worker":
            assert grace >= WORKER_STOP_SECONDS + 5, name


@pytest.mark.parametrize("target", CLUSTER_TARGETS)
def test_every_pod_is_spread_over_zones_and_nodes(target: str) -> None:
    for workload in of_kind(manifests(target), "Deployment"):
        constraints = pod_spec(workload)["topologySpreadConstraints"]
        keys = {c["topologyKey"] for c in constraints}
        assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
        labels = workload["spec"]["template"]["metadata"]["labels"]
        for constraint in constraints:
            assert constraint["labelSelector"]["matchLabels"].items() <= labels.items()
            assert {"app.kubernetes.io/name", "app.kubernetes.io/component"} <= set(
                constraint["matchLabelKeys"]
            )


@pytest.mark.parametrize("target", CLUSTER_TARGETS)
def test_prometheus_finds_every_process(target: str) -> None:
    docs = manifests(target)
    for workload in bazaar_workloads(docs):
        if role(workload)[1] == "migrate":
            continue
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        port = API_PORT if role(workload)[1] == "api" else WORKER_PORT
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(port)
    if target != "base":
        monitor = named(docs, "ServiceMonitor", "bazaar")["spec"]
        assert monitor["selector"]["matchLabels"] == {"app.kubernetes.io/part-of": "bazaar"}
        assert monitor["endpoints"][0]["port"] == "http"
