"""The Kubernetes manifests (deploy/k8s), checked offline: every overlay renders with
`kubectl kustomize`, validates against the Kubernetes schemas (kubernetes-validate, strict),
passes the policy scan (checkov), and keeps the promises the manifests make (locked-down pods
with probes and limits, the signing key in identity's pods only, the Ingress routing every
path of the API to its service, graceful termination).

In CI (CI=true) a missing tool fails the run; elsewhere it skips these tests with a reason
that starts "SKIPPED, NOT TESTED:". checkov is looked for as $CHECKOV, then on PATH, then
beside this Python: it pins `packaging<24`, which pytest 9 refuses, so it may live in a venv
of its own.
"""

import base64
import copy
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

REPOSITORY = Path(__file__).resolve().parents[2]
K8S = REPOSITORY / "deploy" / "k8s"
API_CONTRACT = REPOSITORY.parent / "shared" / "API.md"

OVERLAYS = ("local", "production", "managed")
CLUSTER_TARGETS = ("base", "production", "managed")
"""What a real cluster gets: the base and the two overlays with the cluster's own objects."""
SERVICES = ("identity", "catalog", "orders", "payments", "notifications")

KUBERNETES_VERSIONS = ("1.30", "1.32")
"""The oldest Kubernetes the manifests are written for (topology spread's matchLabelKeys is
on by default since 1.27; 1.30 is the oldest still maintained) and the kubectl of these
machines."""
CRD_GROUPS = ("postgresql.cnpg.io", "rabbitmq.com", "monitoring.coreos.com")
"""Operators' kinds (CloudNativePG, RabbitMQ Cluster Operator, Prometheus Operator).
kubernetes-validate knows the built-in kinds only and cannot load a CRD's schema, so these
are not schema-validated; test_production_runs_its_stateful_parts_through_their_operators
checks what the manifests promise of them."""

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
API_PORT, WORKER_PORT = 8000, 9000
DRAIN_SECONDS = 2
"""How long `bazaar serve` answers /readyz 503 after SIGTERM before it stops accepting."""
WORKER_STOP_SECONDS = 15
"""How long a worker waits for its running handlers after SIGTERM."""
LOCAL_PORTS = {name: (8101 + index, 9101 + index) for index, name in enumerate(SERVICES)}
"""Each service's (API, worker) port on the machine in the local overlay (host networking)."""
PODMAN_KINDS = {"Pod", "Deployment", "ConfigMap", "PersistentVolumeClaim"}
"""What `podman kube play` (4.3) creates; it rejects or ignores the rest."""
PRIVATE_KEY_SOURCES = {"bazaar-signing-key", "bazaar-dev-signing-key"}


def missing(tool: str, how: str) -> None:
    message = f"{tool} is not installed ({how})"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(f"SKIPPED, NOT TESTED: {message}")


def kustomization(target: str) -> Path:
    return K8S / target if target == "base" else K8S / "overlays" / target


@cache
def rendered(target: str) -> str:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        missing("kubectl", "kubectl with its built-in kustomize, v1.32 or later")
    done = subprocess.run(
        [kubectl, "kustomize", str(kustomization(target))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"kubectl kustomize {target} failed:\n{done.stderr}"
    return done.stdout


@cache
def parsed(target: str) -> tuple[dict[str, Any], ...]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return tuple(doc for doc in yaml.load_all(rendered(target), Loader=loader) if doc)


def manifests(target: str) -> list[dict[str, Any]]:
    """The rendered objects, a copy of their own for each caller."""
    return copy.deepcopy(list(parsed(target)))


def of_kind(docs: list[dict[str, Any]], *kinds: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] in kinds]


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"] if workload["kind"] == "Pod" else workload["spec"]["template"]["spec"]


def workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return of_kind(docs, "Deployment", "StatefulSet", "Job", "Pod")


def bazaar_workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every workload that runs the Bazaar image (not Redis or the operators' parts)."""
    return [w for w in workloads(docs) if containers(w)[0]["name"] == "bazaar"]


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def role(workload: dict[str, Any]) -> tuple[str, str]:
    labels = workload["metadata"]["labels"]
    return labels["app.kubernetes.io/name"], labels["app.kubernetes.io/component"]


def env_names(container: dict[str, Any]) -> list[str]:
    return [variable["name"] for variable in container.get("env", [])]


def env_value(container: dict[str, Any], name: str) -> str:
    values = [v["value"] for v in container.get("env", []) if v["name"] == name and "value" in v]
    assert values, f"{container['name']} sets no {name}"
    return values[0]


def config_data(docs: list[dict[str, Any]], prefix: str) -> dict[str, str]:
    """The data of the generated ConfigMap or Secret named `prefix` (plus kustomize's hash)."""
    found = [
        doc
        for doc in of_kind(docs, "ConfigMap", "Secret")
        if re.fullmatch(rf"{re.escape(prefix)}(-[a-z0-9]{{10}})?", doc["metadata"]["name"])
    ]
    assert len(found) == 1, f"expected one {prefix}, found {len(found)}"
    doc = found[0]
    if doc["kind"] == "Secret":
        return {k: base64.b64decode(v).decode() for k, v in doc.get("data", {}).items()}
    return dict(doc.get("data", {}))


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


# --- rendering, schemas, policy -----------------------------------------------------------


@pytest.mark.parametrize("target", ("base", *OVERLAYS))
def test_every_overlay_renders(target: str) -> None:
    docs = manifests(target)
    assert docs
    for doc in docs:
        assert doc.get("apiVersion") and doc.get("kind") and doc["metadata"].get("name"), doc


@pytest.fixture(scope="module")
def validate() -> Iterator[Any]:
    try:
        import kubernetes_validate
        from kubernetes_validate.utils import SchemaNotFoundError
    except ImportError:
        missing("kubernetes-validate", "pip install kubernetes-validate")
    yield kubernetes_validate.validate, SchemaNotFoundError


@pytest.mark.parametrize("target", ("base", *OVERLAYS))
def test_every_overlay_validates_against_the_kubernetes_schemas(target: str, validate: Any) -> None:
    check, schema_not_found = validate
    problems = []
    for doc in manifests(target):
        if doc["apiVersion"].split("/")[0] in CRD_GROUPS:
            continue
        for version in KUBERNETES_VERSIONS:
            where = f"{doc['kind']}/{doc['metadata']['name']} on Kubernetes {version}"
            try:
                check(doc, version, strict=True)
            except schema_not_found:
                problems.append(f"{where}: no schema for {doc['apiVersion']}")
            except Exception as error:  # the validator's ValidationError and its kin
                path = ".".join(str(p) for p in getattr(error, "path", []))
                problems.append(f"{where}: {path}: {getattr(error, 'message', error)}")
    assert not problems, "\n".join(problems)


def test_the_schema_validation_rejects_an_unknown_field(validate: Any) -> None:
    """The check above would pass a typo silently if strict mode did not bite."""
    check, _ = validate
    deployment = named(manifests("base"), "Deployment", "catalog")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(Exception, match="readinesProbe"):
        check(deployment, KUBERNETES_VERSIONS[0], strict=True)


def checkov_command() -> str:
    found = (
        os.environ.get("CHECKOV")
        or shutil.which("checkov")
        or shutil.which("checkov", path=str(Path(sys.executable).parent))
    )
    if not found:
        missing("checkov", "pip install checkov, in a venv of its own; or set CHECKOV")
    return str(found)


@pytest.fixture(scope="module")
def policy_failures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """checkov's failed checks per overlay: one scan of every rendered overlay at once (its
    start costs more than the checks); deploy/k8s/.checkov.yaml lists what it skips, and why."""
    checkov = checkov_command()
    folder = tmp_path_factory.mktemp("rendered")
    for overlay in OVERLAYS:
        (folder / f"{overlay}.yaml").write_text(rendered(overlay))
    config = K8S / ".checkov.yaml"
    arguments = ["--directory", str(folder), "--config-file", str(config), "--output", "json"]
    done = subprocess.run(
        [checkov, *arguments, "--quiet", "--compact", "--skip-download"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode in (0, 1), f"checkov failed to run:\n{done.stderr[-4000:]}"
    reports = yaml.safe_load(done.stdout) if done.stdout.strip() else []
    failures: dict[str, list[str]] = {overlay: [] for overlay in OVERLAYS}
    for report in reports if isinstance(reports, list) else [reports]:
        for failed in (report.get("results") or {}).get("failed_checks", []):
            overlay = Path(failed["file_path"]).stem
            failures[overlay].append(f"{failed['check_id']} {failed['resource']}")
    return failures


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_policy_scan_passes(overlay: str, policy_failures: dict[str, list[str]]) -> None:
    assert not policy_failures[overlay], "\n".join(sorted(policy_failures[overlay]))


def test_every_skipped_policy_check_says_why() -> None:
    config = (K8S / ".checkov.yaml").read_text()
    skipped = yaml.safe_load(config)["skip-check"]
    for check in skipped:
        before = config.split(f"- {check}")[0].rstrip().splitlines()
        assert before[-1].strip().startswith("#"), f"{check} is skipped without a reason"
    for overlay in OVERLAYS:
        for doc in manifests(overlay):
            for key, value in (doc["metadata"].get("annotations") or {}).items():
                if key.startswith("checkov.io/skip"):
                    check, _, reason = value.partition("=")
                    assert reason.strip(), f"{overlay}: {check} is skipped without a reason"


# --- what every pod promises ---------------------------------------------------------------


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


# --- the front door ------------------------------------------------------------------------


def routes(docs: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """(path, pathType) -> the Service every rule of every Ingress sends it to."""
    table = {}
    for ingress in of_kind(docs, "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                assert backend["port"] in ({"name": "http"}, {"number": API_PORT}), backend
                table[(path["path"], path["pathType"])] = backend["name"]
    return table


def route(docs: list[dict[str, Any]], path: str) -> str | None:
    """The Service a request for `path` reaches: an Exact match first, else the longest Prefix
    whose elements start the path's, as the Ingress specification matches."""
    table = routes(docs)
    if (path, "Exact") in table:
        return table[(path, "Exact")]
    elements = path.rstrip("/").split("/")
    prefixes = [
        (p, service)
        for (p, kind), service in table.items()
        if kind == "Prefix"
        and elements[: len(p.rstrip("/").split("/"))] == p.rstrip("/").split("/")
    ]
    return max(prefixes, key=lambda match: len(match[0]))[1] if prefixes else None


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


# --- network policies ---------------------------------------------------------------------


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not selector:
        return True
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        value = labels.get(key)
        if operator == "In" and value not in expression["values"]:
            return False
        if operator == "NotIn" and value in expression["values"]:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


@pytest.mark.parametrize("target", CLUSTER_TARGETS)
def test_network_policies_deny_by_default_and_open_only_what_each_pod_needs(
    target: str,
) -> None:
    docs = manifests(target)
    policies = of_kind(docs, "NetworkPolicy")
    deny = named(docs, "NetworkPolicy", "default-deny")["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny

    def allowed(labels: dict[str, str], direction: str) -> list[dict[str, Any]]:
        return [
            rule
            for p in policies
            if selects(p["spec"]["podSelector"], labels)
            for rule in p["spec"].get(direction, [])
        ]

    for workload in bazaar_workloads(docs):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        service, component = role(workload)
        ingress = allowed(labels, "ingress")
        sources = [source for rule in ingress for source in rule.get("from", [])]
        namespaces = {
            s["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
            for s in sources
            if "namespaceSelector" in s
        }
        if component == "api":
            assert namespaces == {"ingress-nginx", "monitoring"}, workload["metadata"]["name"]
        elif component == "worker":
            assert namespaces == {"monitoring"}, workload["metadata"]["name"]
        else:
            assert not ingress, workload["metadata"]["name"]
        pods = {
            tuple(sorted(s["podSelector"]["matchLabels"].items()))
            for s in sources
            if "podSelector" in s and "namespaceSelector" not in s
        }
        from_orders = (("app.kubernetes.io/component", "api"), ("app.kubernetes.io/name", "orders"))
        assert pods == ({from_orders} if (service, component) == ("catalog", "api") else set())
        egress = allowed(labels, "egress")
        web = {
            port["port"]
            for rule in egress
            if any("ipBlock" in destination for destination in rule.get("to", []))
            for port in rule.get("ports", [])
        }
        internet = (service, component) == ("notifications", "worker")
        assert web == ({80, 443} if internet else set()), workload["metadata"]["name"]
        for rule in egress:
            assert rule.get("ports"), f"{workload['metadata']['name']} may reach any port"
            for destination in rule.get("to", []):
                if "ipBlock" in destination:
                    assert "10.0.0.0/8" in destination["ipBlock"].get("except", []) or (
                        destination["ipBlock"]["cidr"] == "::/0"
                    )


# --- the overlays --------------------------------------------------------------------------


def test_the_local_overlay_is_what_podman_kube_play_runs() -> None:
    docs = manifests("local")
    assert {doc["kind"] for doc in docs} <= PODMAN_KINDS
    for workload in workloads(docs):
        spec = pod_spec(workload)
        assert spec["hostNetwork"] is True
        container = containers(workload)[0]
        assert container["image"] == "localhost/bazaar:dev"
        assert container["imagePullPolicy"] == "Never"
        # podman maps a container port, which host networking refuses
        assert "ports" not in container, workload["metadata"]["name"]
        # podman's secrets are not read back by secretKeyRef: ConfigMaps only
        for variable in container.get("env", []):
            assert "secretKeyRef" not in variable.get("valueFrom", {}), variable["name"]
        assert all("secretRef" not in origin for origin in container.get("envFrom", []))
        if workload["kind"] == "Deployment":
            assert workload["spec"]["replicas"] == 1
            probe = container["livenessProbe"]["exec"]["command"]
            port = container["args"][container["args"].index("--port") + 1]
            assert probe[0] == "python" and f"127.0.0.1:{port}/healthz" in probe[-1]
    migrate = named(docs, "Pod", "bazaar-migrate")
    assert containers(migrate)[0]["args"] == ["migrate"]
    connections = config_data(docs, "bazaar-connections")
    assert connections["BAZAAR_DATABASE_URL"].startswith("postgresql://postgres@127.0.0.1:5432/")
    assert connections["BAZAAR_REDIS_URL"].startswith("redis://127.0.0.1:6379")
    assert connections["BAZAAR_BROKER_URL"].startswith("amqp://guest:guest@127.0.0.1:5672")
    assert config_data(docs, "bazaar-config")["BAZAAR_CATALOG_URL"] == "http://127.0.0.1:8102"


def test_the_local_key_pair_is_a_pair() -> None:
    from cryptography.hazmat.primitives import serialization

    docs = manifests("local")
    private = serialization.load_pem_private_key(
        config_data(docs, "bazaar-dev-signing-key")["private.pem"].encode(), password=None
    )
    public = serialization.load_pem_public_key(
        config_data(docs, "bazaar-jwt-public-keys")["public.pem"].encode()
    )
    raw = (serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert private.public_key().public_bytes(*raw) == public.public_bytes(*raw)


@pytest.mark.parametrize("overlay", ("production", "managed"))
def test_the_migrations_job_runs_once_per_release(overlay: str) -> None:
    docs = manifests(overlay)
    jobs = of_kind(docs, "Job")
    assert len(jobs) == 1
    job = jobs[0]
    image = containers(job)[0]["image"]
    assert containers(job)[0]["args"] == ["migrate"]
    assert job["metadata"]["name"] == f"bazaar-migrate-{image.rsplit(':', 1)[1]}"
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    assert not any(
        c["args"] == ["migrate"] for w in of_kind(docs, "Deployment") for c in containers(w)
    )


def test_production_runs_its_stateful_parts_through_their_operators() -> None:
    docs = manifests("production")
    primary = named(docs, "Cluster", "bazaar-pg")["spec"]
    assert primary["instances"] == 3
    assert primary["bootstrap"]["initdb"]["owner"] == "bazaar"
    shards = [c for c in of_kind(docs, "Cluster") if c["metadata"]["name"] != "bazaar-pg"]
    assert [c["metadata"]["name"] for c in shards] == ["bazaar-orders-0", "bazaar-orders-1"]
    poolers = {p["spec"]["cluster"]["name"] for p in of_kind(docs, "Pooler")}
    assert poolers == {"bazaar-pg", "bazaar-orders-0", "bazaar-orders-1"}
    for pooler in of_kind(docs, "Pooler"):
        assert pooler["spec"]["pgbouncer"]["poolMode"] == "transaction"
        assert pooler["spec"]["pgbouncer"]["parameters"]["server_reset_query"] == "DEALLOCATE ALL"
    assert named(docs, "RabbitmqCluster", "bazaar-rabbitmq")["spec"]["replicas"] == 3
    named(docs, "StatefulSet", "bazaar-redis")
    assert config_data(docs, "bazaar-config")["BAZAAR_DATABASE_POOLER"] == "pgbouncer"

    for workload in bazaar_workloads(docs):
        container = containers(workload)[0]
        name = workload["metadata"]["name"]
        database = env_value(container, "BAZAAR_DATABASE_URL")
        if role(workload)[1] == "migrate":
            assert "@bazaar-pg-rw:5432/bazaar" in database, name
            assert env_value(container, "BAZAAR_DATABASE_POOLER") == "none"
            shard_host = "-rw:5432/"
        else:
            assert "@bazaar-pg-pooler-rw:5432/bazaar" in database, name
            assert "@bazaar-pg-pooler-ro:5432/" in env_value(container, "BAZAAR_REPLICA_URLS")
            shard_host = "-pooler-rw:5432/"
        assert "@bazaar-rabbitmq:5672/" in env_value(container, "BAZAAR_BROKER_URL")
        assert "@bazaar-redis:6379/" in env_value(container, "BAZAAR_REDIS_URL")
        if role(workload)[0] in ("orders", "bazaar"):
            shards_url = env_value(container, "BAZAAR_ORDER_SHARD_URLS")
            assert shards_url.count(shard_host) == 2, name
        else:
            assert "BAZAAR_ORDER_SHARD_URLS" not in env_names(container), name


def test_managed_services_are_reached_over_tls_from_a_secret() -> None:
    docs = manifests("managed")
    connections = config_data(docs, "bazaar-connections")
    urls = [
        connections["BAZAAR_DATABASE_URL"],
        *connections["BAZAAR_REPLICA_URLS"].split(","),
        *connections["BAZAAR_ORDER_SHARD_URLS"].split(","),
    ]
    for url in urls:
        assert re.search(r"[?&]sslmode=(require|verify-ca|verify-full)", url), url
    assert connections["BAZAAR_REDIS_URL"].startswith("rediss://")
    assert connections["BAZAAR_BROKER_URL"].startswith("amqps://")
    # example values, marked as such, that fail rather than connect anywhere
    assert all("REPLACE-ME" in value for value in connections.values())
    for workload in bazaar_workloads(docs):
        container = containers(workload)[0]
        name = workload["metadata"]["name"]
        # every URL comes from the Secret, none is written into a pod's spec
        assert not [n for n in env_names(container) if n.endswith("_URL")], name
        assert {"secretRef": {"name": connections_secret(docs)}} in container["envFrom"], name
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert "/etc/bazaar/ca" in mounts, name


def connections_secret(docs: list[dict[str, Any]]) -> str:
    names = [s["metadata"]["name"] for s in of_kind(docs, "Secret")]
    return next(n for n in names if n.startswith("bazaar-connections"))
