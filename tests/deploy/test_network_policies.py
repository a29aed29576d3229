"""The network policies: deny by default, and open only what each pod needs."""

from typing import Any

import pytest

from tests.deploy.manifests import (
    CLUSTER_TARGETS,
    bazaar_workloads,
    manifests,
    named,
    of_kind,
    role,
)


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
