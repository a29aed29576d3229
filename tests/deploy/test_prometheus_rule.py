"""The PrometheusRule of the Kubernetes manifests is `bazaar up`'s rule file: checked in as
`python -m bazaar.runtime.cluster.prometheus` prints it, rendered into the overlays that run
the Prometheus Operator with the same groups, and accepted by promtool. kubernetes-validate
has no schema for the operator's kinds (test_rendering.py), so promtool checks the content.
"""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from bazaar.runtime.cluster import prometheus
from tests.deploy.manifests import K8S, manifests, missing, named
from tests.generated import assert_printed_by

GENERATED = K8S / "components" / "prometheus-operator" / "prometheus-rule.yaml"
OPERATOR_OVERLAYS = ("production", "managed")


def test_the_checked_in_prometheus_rule_is_what_the_generator_prints() -> None:
    assert_printed_by("bazaar.runtime.cluster.prometheus", GENERATED)


@pytest.mark.parametrize("overlay", OPERATOR_OVERLAYS)
def test_the_overlay_ships_the_rules_of_bazaar_up(overlay: str, tmp_path: Path) -> None:
    rule = named(manifests(overlay), "PrometheusRule", "bazaar")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["spec"] == yaml.safe_load(prometheus.RULES.read_text())
    promtool = shutil.which("promtool")
    if promtool is None:
        missing("promtool", "Debian package `prometheus`")
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(rule["spec"]))
    checked = subprocess.run(
        [str(promtool), "check", "rules", str(rules)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("overlay", OPERATOR_OVERLAYS)
def test_the_service_monitor_labels_targets_as_the_rules_expect(overlay: str) -> None:
    """job="bazaar" and `service` the service's name, as `bazaar up`'s target file says."""
    docs = manifests(overlay)
    monitor = named(docs, "ServiceMonitor", "bazaar")["spec"]
    assert monitor["jobLabel"] == "app.kubernetes.io/part-of"
    [relabel] = monitor["endpoints"][0]["relabelings"]
    assert relabel["targetLabel"] == "service"
    assert relabel["sourceLabels"] == ["__meta_kubernetes_service_label_app_kubernetes_io_name"]
    processes = [
        labels
        for d in docs
        if d["kind"] == "Service"
        and (labels := d["metadata"].get("labels", {})).get("app.kubernetes.io/component")
        in ("api", "worker")
    ]
    assert all(labels["app.kubernetes.io/part-of"] == "bazaar" for labels in processes)
    names = {labels["app.kubernetes.io/name"] for labels in processes}
    assert names == {"identity", "catalog", "orders", "payments", "notifications"}
    assert prometheus.JOB == "bazaar"
