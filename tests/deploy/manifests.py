"""The Kubernetes manifests (deploy/k8s) as the deploy tests read them: each target rendered
once with `kubectl kustomize`, and the readers of its objects (workloads, containers, the
Ingress's routing table).

In CI (CI=true) a missing tool fails the run; elsewhere it skips these tests with a reason
that starts "SKIPPED, NOT TESTED:".
"""

import base64
import copy
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import REPOSITORY

K8S = REPOSITORY / "deploy" / "k8s"
OVERLAYS = ("local", "production", "managed")
CLUSTER_TARGETS = ("base", "production", "managed")
"""What a real cluster gets: the base and the two overlays with the cluster's own objects."""
API_PORT, WORKER_PORT = 8000, 9000


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
