"""What each overlay adds: `local` is what `podman kube play` runs, `production` runs the
stateful parts through their operators, `managed` reaches managed services over TLS; both
cluster overlays migrate once per release."""

import re
from typing import Any

import pytest

from tests.deploy.manifests import (
    bazaar_workloads,
    config_data,
    containers,
    env_names,
    env_value,
    manifests,
    named,
    of_kind,
    pod_spec,
    role,
    workloads,
)

PODMAN_KINDS = {"Pod", "Deployment", "ConfigMap", "PersistentVolumeClaim"}
"""What `podman kube play` (4.3) creates; it rejects or ignores the rest."""


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
