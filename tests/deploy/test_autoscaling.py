"""The production overlay's autoscaling: an HPA (autoscaling/v2) per API on CPU and on the
requests in flight per pod that the Prometheus Adapter's rule serves, with its behavior
written down; a KEDA ScaledObject per worker on its own consumers' queues (and its outbox
backlog), never to zero. KEDA's kinds have no schema in kubernetes-validate: they are checked
against the part of KEDA's CRD they use (KEDA 2.16, `keda.sh/v1alpha1`), strictly."""

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from bazaar.platform.observability import HTTP_LATENCY
from tests.deploy.manifests import K8S, containers, env_names, manifests, of_kind, role

PRODUCTION = K8S / "overlays" / "production"
IN_FLIGHT = "bazaar_http_requests_in_flight"
PUBLISHERS = {"identity", "catalog", "orders", "payments"}
"""The services with events to publish, so an outbox to relay (notifications has none)."""

_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
SCALED_OBJECT = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["scaleTargetRef", "triggers"],
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string"},
                        "envSourceContainerName": {"type": "string"},
                    },
                },
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "initialCooldownPeriod": {"type": "integer", "minimum": 0},
                "idleReplicaCount": {"type": "integer", "minimum": 0},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "fallback": {"type": "object"},
                "advanced": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "scalingModifiers": {"type": "object"},
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "name": {"type": "string"},
                                "behavior": {"type": "object"},
                            },
                        },
                    },
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "metadata": _STRING_MAP,
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "useCachedMetrics": {"type": "boolean"},
                            "authenticationRef": {"type": "object"},
                        },
                    },
                },
            },
        },
    },
}
RABBITMQ_KEYS = {"protocol", "host", "usernameFromEnv", "passwordFromEnv", "queueName", "mode",
                 "value", "activationValue", "vhostName", "hostFromEnv"}  # fmt: skip
PROMETHEUS_KEYS = {"serverAddress", "query", "threshold", "activationThreshold"}


def consumer_queues(tmp_path: Path) -> dict[str, set[str]]:
    """Each service's queues on RabbitMQ (`bazaar.<consumer>`), from the services' parts."""
    from bazaar.runtime.config import Settings
    from bazaar.runtime.embedded import Runtime

    runtime = Runtime(Settings.from_env({"BAZAAR_DATA_DIR": str(tmp_path)}))
    return {
        part.name: {f"bazaar.{s.consumer}" for s in part.subscriptions if not s.is_broadcast}
        for part in runtime.parts
    }


def deployments(docs: list[dict[str, Any]], component: str) -> dict[str, dict[str, Any]]:
    return {
        d["metadata"]["name"]: d for d in of_kind(docs, "Deployment") if role(d)[1] == component
    }


def targeting(docs: list[dict[str, Any]], kind: str, name: str) -> list[dict[str, Any]]:
    return [d for d in of_kind(docs, kind) if d["spec"]["scaleTargetRef"]["name"] == name]


def assert_behavior_written_down(behavior: dict[str, Any]) -> None:
    for direction in ("scaleUp", "scaleDown"):
        rules = behavior[direction]
        assert "stabilizationWindowSeconds" in rules, direction
        assert rules["policies"], direction
        assert all(p["periodSeconds"] > 0 and p["value"] > 0 for p in rules["policies"])
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] > 0  # a lull keeps the pods


def test_every_api_scales_on_cpu_and_requests_in_flight_with_its_behavior_written_down() -> None:
    docs = manifests("production")
    apis = deployments(docs, "api")
    assert set(apis) == {"identity", "catalog", "orders", "payments", "notifications"}
    for name, deployment in apis.items():
        [hpa] = targeting(docs, "HorizontalPodAutoscaler", name)
        assert hpa["apiVersion"] == "autoscaling/v2"
        spec = hpa["spec"]
        assert 1 <= spec["minReplicas"] <= spec["maxReplicas"], name
        metrics = {m["type"]: m for m in spec["metrics"]}
        assert metrics["Resource"]["resource"]["name"] == "cpu"
        assert metrics["Resource"]["resource"]["target"]["type"] == "Utilization"
        pods = metrics["Pods"]["pods"]
        assert pods["metric"]["name"] == IN_FLIGHT
        assert pods["target"]["type"] == "AverageValue" and float(pods["target"]["averageValue"])
        assert_behavior_written_down(spec["behavior"])
        assert "replicas" not in deployment["spec"], f"{name}: the HPA owns its replicas"


def test_the_adapter_rule_serves_the_metric_the_hpas_scale_on() -> None:
    values = yaml.safe_load((PRODUCTION / "prometheus-adapter-values.yaml").read_text())
    [rule] = values["rules"]["custom"]
    assert rule["name"]["as"] == IN_FLIGHT
    series = f"{HTTP_LATENCY._name}_sum"  # seconds spent answering, a counter
    assert rule["seriesQuery"].startswith(series + "{")
    assert rule["name"]["matches"] == f"^{series}$"
    assert rule["metricsQuery"].startswith("sum(rate(<<.Series>>{<<.LabelMatchers>>}[")
    assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}


def test_every_worker_scales_on_its_own_queues_and_outbox_and_never_to_zero(
    tmp_path: Path,
) -> None:
    docs = manifests("production")
    queues = consumer_queues(tmp_path)
    workers = deployments(docs, "worker")
    assert len(workers) == 5
    for name, deployment in workers.items():
        service = role(deployment)[0]
        assert not targeting(docs, "HorizontalPodAutoscaler", name), "KEDA makes its own HPA"
        [scaled] = targeting(docs, "ScaledObject", name)
        spec = scaled["spec"]
        assert spec["minReplicaCount"] >= 1, f"{name}: a worker also relays its outbox"
        assert spec["minReplicaCount"] <= spec["maxReplicaCount"]
        triggers = spec["triggers"]
        rabbit = [t["metadata"] for t in triggers if t["type"] == "rabbitmq"]
        assert {t["queueName"] for t in rabbit} == queues[service], name
        env = env_names(containers(deployment)[0])
        for metadata in rabbit:
            assert set(metadata) <= RABBITMQ_KEYS, metadata
            assert metadata["mode"] == "QueueLength" and float(metadata["value"]) > 0
            assert {metadata["usernameFromEnv"], metadata["passwordFromEnv"]} <= set(env)
        outbox = [t["metadata"] for t in triggers if t["type"] == "prometheus"]
        assert bool(outbox) == (service in PUBLISHERS), name
        for metadata in outbox:
            assert set(metadata) <= PROMETHEUS_KEYS, metadata
            assert f'service="{service}"' in metadata["query"]
            assert "bazaar_outbox_backlog" in metadata["query"]
        assert {t["type"] for t in triggers} <= {"rabbitmq", "prometheus"}
        assert_behavior_written_down(spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"])
        assert "replicas" not in deployment["spec"], f"{name}: KEDA owns its replicas"


def test_the_scaled_objects_hold_to_kedas_schema() -> None:
    from kubernetes_validate import validate

    for scaled in of_kind(manifests("production"), "ScaledObject"):
        jsonschema.validate(scaled, SCALED_OBJECT)
        behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        as_hpa = {  # the behavior KEDA hands its HPA, checked by Kubernetes' own schema
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "check"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
                "maxReplicas": 2,
                "behavior": behavior,
            },
        }
        validate(as_hpa, "1.30", strict=True)


@pytest.mark.parametrize(
    ("where", "wrong"),
    [
        (("spec",), {"minReplicas": 1}),  # the HPA's word, not KEDA's
        (("spec", "triggers", 0, "metadata"), {"value": 100}),  # must be a string
        (("spec", "triggers", 0), {"metadatas": {}}),
    ],
)
def test_the_keda_schema_check_rejects_a_mistake(where: tuple[Any, ...], wrong: dict) -> None:
    scaled = of_kind(manifests("production"), "ScaledObject")[1]
    node: Any = scaled
    for key in where:
        node = node[key]
    node.update(wrong)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, SCALED_OBJECT)
