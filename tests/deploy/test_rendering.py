"""Every overlay renders with `kubectl kustomize`, validates against the Kubernetes schemas
(kubernetes-validate, strict) and passes the policy scan (checkov).

checkov is looked for as $CHECKOV, then on PATH, then beside this Python: it pins
`packaging<24`, which pytest 9 refuses, so it may live in a venv of its own.
"""

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.manifests import K8S, OVERLAYS, manifests, missing, named, rendered

KUBERNETES_VERSIONS = ("1.30", "1.32")
"""The oldest Kubernetes the manifests are written for (topology spread's matchLabelKeys is
on by default since 1.27; 1.30 is the oldest still maintained) and the kubectl of these
machines."""
CRD_GROUPS = ("postgresql.cnpg.io", "rabbitmq.com", "monitoring.coreos.com", "keda.sh")
"""Operators' kinds (CloudNativePG, RabbitMQ Cluster Operator, Prometheus Operator, KEDA).
kubernetes-validate knows the built-in kinds only and cannot load a CRD's schema, so these
are not schema-validated; test_production_runs_its_stateful_parts_through_their_operators
checks what the manifests promise of them, test_autoscaling.py KEDA's against its CRD's."""


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
