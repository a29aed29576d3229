"""`bazaar up`'s generated configurations: HAProxy's routing, checks and retries (validated by
HAProxy itself), supervisord's programs, the connection budget."""

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from bazaar.runtime.cluster import haproxy, supervisor
from bazaar.runtime.cluster.budget import RESERVED, TOOLS, plan_budget
from bazaar.runtime.cluster.servers import ServersError, State
from bazaar.runtime.cluster.topology import (
    PortSource,
    Process,
    Topology,
    TopologyError,
    parse_instances,
)
from bazaar.runtime.services import SERVICES
from tests.scaled import _unavailable


class CountingPorts(PortSource):
    def __init__(self) -> None:
        super().__init__()
        self.next = 20000

    def take(self) -> int:
        self.next += 1
        return self.next


def _processes(**instances: int) -> list[Process]:
    counts = parse_instances(",".join(f"{k}={v}" for k, v in instances.items()))
    return Topology(counts).processes(CountingPorts())


def _haproxy_config(tmp_path: Path) -> str:
    balancer = haproxy.Balancer(8000, 8404, tmp_path / "haproxy.sock")
    return haproxy.render(balancer, _processes(catalog=3))


def test_instances_default_to_two_and_refuse_unknown_services() -> None:
    assert parse_instances("catalog=4") == {**dict.fromkeys(SERVICES, 2), "catalog": 4}
    for wrong in ("shop=2", "catalog", "catalog=0", "catalog=x"):
        with pytest.raises(TopologyError):
            parse_instances(wrong)
    with pytest.raises(TopologyError):
        Topology(shards=0)


def test_every_instance_and_one_worker_per_service_get_their_own_port() -> None:
    processes = _processes(catalog=3)
    assert [p.name for p in processes if p.service == "catalog"] == [
        "catalog-0",
        "catalog-1",
        "catalog-2",
        "catalog-worker",
    ]
    assert len({p.port for p in processes}) == len(processes) == 2 * 4 + 3 + 5


def test_haproxy_accepts_the_generated_configuration(tmp_path: Path) -> None:
    if shutil.which("haproxy") is None:
        _unavailable("haproxy is not installed (see the README)")
    config = tmp_path / "haproxy.cfg"
    config.write_text(_haproxy_config(tmp_path))
    done = subprocess.run(["haproxy", "-c", "-f", str(config)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "Configuration file is valid" in done.stdout


def _section(config: str, name: str) -> list[str]:
    lines = config.splitlines()
    start = lines.index(name)
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].strip()), len(lines))
    return [line.strip() for line in lines[start + 1 : end]]


def test_each_path_prefix_goes_to_the_service_that_owns_it(tmp_path: Path) -> None:
    frontend = _section(_haproxy_config(tmp_path), "frontend api")
    expected = {
        "identity": ["/v1/auth", "/v1/users", "/.well-known"],
        "catalog": ["/v1/products", "/v1/categories", "/v1/jobs"],
        "orders": ["/v1/cart", "/v1/orders", "/v1/admin/orders"],
        "payments": ["/v1/payments"],
        "notifications": ["/v1/notifications", "/v1/webhooks"],
    }
    for service, prefixes in expected.items():
        exact = next(line for line in frontend if line.startswith(f"acl to_{service} path "))
        below = next(line for line in frontend if line.startswith(f"acl to_{service} path_beg"))
        for prefix in prefixes:
            assert f" {prefix}" in exact
            assert f" {prefix}/" in below  # /v1/ordersx is nobody's
        assert f"use_backend {service} if to_{service}" in frontend
    # the balancer answers by itself what belongs to no single service
    assert any('string "ok" if { path /healthz }' in line for line in frontend)
    assert any(line.startswith("http-request return status 404") for line in frontend)
    assert any("prometheus-exporter if { path /metrics }" in line for line in frontend)


def test_backends_check_readiness_fast_and_retry_elsewhere(tmp_path: Path) -> None:
    config = _haproxy_config(tmp_path)
    defaults = _section(config, "defaults")
    assert "retries 2" in defaults
    assert "option redispatch 1" in defaults
    assert "retry-on conn-failure empty-response" in defaults
    assert all(not line.startswith("timeout") or "s" in line.split()[-1] for line in defaults)
    catalog = _section(config, "backend catalog")
    assert "http-check send meth GET uri /readyz" in catalog
    assert "http-check expect status 200" in catalog
    checks = next(line for line in catalog if line.startswith("default-server"))
    assert "inter 500ms" in checks and "fall 2" in checks and "rise 1" in checks
    assert [line.split()[1] for line in catalog if line.startswith("server ")] == [
        "catalog-0",
        "catalog-1",
        "catalog-2",
    ]
    frontend = _section(config, "frontend api")
    # a POST without an Idempotency-Key is replayed only when it never reached an instance
    assert "http-request disable-l7-retry if !replayable !keyed" in frontend
    assert "stats uri /stats" in _section(config, "frontend stats")


def test_supervisord_runs_each_program_restarted_and_stopped_within_bounds(
    tmp_path: Path,
) -> None:
    layout = supervisor.Layout(tmp_path)
    programs = [
        supervisor.Program("redis", ["redis-server", "--save", ""], "servers", priority=10),
        supervisor.Program(
            "catalog-0",
            ["bazaar", "serve", "catalog", "--port", "9001"],
            "catalog",
            {"BAZAAR_DB_POOL_SIZE": "5"},
        ),
        supervisor.Program("haproxy", ["haproxy"], "edge", priority=200, stop_signal="USR1"),
    ]
    text = supervisor.render(layout, programs, {"BAZAAR_DATABASE_URL": "postgresql://a%b@h/db"})
    parser = configparser.RawConfigParser()
    parser.read_string(text)
    catalog = parser["program:catalog-0"]
    assert catalog["command"] == '"bazaar" "serve" "catalog" "--port" "9001"'
    assert catalog["autorestart"] == "true"
    assert catalog["stopsignal"] == "TERM"
    assert int(catalog["stopwaitsecs"]) <= 30
    assert catalog["stopasgroup"] == catalog["killasgroup"] == "true"
    assert catalog["stdout_logfile"] == str(tmp_path / "logs" / "catalog-0.log")
    assert catalog["environment"] == 'BAZAAR_DB_POOL_SIZE="5"'
    assert parser["program:haproxy"]["stopsignal"] == "USR1"
    assert parser["program:redis"]["command"].endswith('"--save" ""')
    # `%` is supervisord's interpolation sign: doubled, it reaches the process as one
    assert parser["supervisord"]["environment"] == 'BAZAAR_DATABASE_URL="postgresql://a%%b@h/db"'
    assert parser["group:catalog"]["programs"] == "catalog-0"
    assert int(parser["group:servers"]["priority"]) < int(parser["group:edge"]["priority"])
    assert parser["unix_http_server"]["chmod"] == "0700"


def test_the_budget_keeps_every_pool_under_max_connections() -> None:
    processes = _processes()  # 2 instances of each service, a worker each: 15 processes
    budget = plan_budget(processes, shards=2, max_connections=200)
    # 15 processes, orders' 3 hold a pool per shard: 12 + 3 * 2 = 18 pools in 187 connections
    assert budget.total <= 200 - RESERVED - TOOLS
    catalog, worker = budget.pools["catalog-0"], budget.pools["catalog-worker"]
    assert (catalog.size, catalog.overflow) == (5, 5)
    assert catalog.capacity == worker.capacity == 10
    assert worker.consumer_concurrency == 8 and catalog.consumer_concurrency == 4
    assert budget.total == 18 * 10
    assert catalog.environment() == {
        "BAZAAR_DB_POOL_SIZE": "5",
        "BAZAAR_DB_MAX_OVERFLOW": "5",
        "BAZAAR_CONSUMER_CONCURRENCY": "4",
    }


def test_more_processes_get_smaller_pools_and_too_many_are_refused() -> None:
    processes = _processes(catalog=16, orders=8)
    budget = plan_budget(processes, shards=4, max_connections=200)
    pools = 2 + 17 + 9 * 4 + 3 + 3  # identity, catalog, orders x 4 shards, payments, notif.
    assert budget.total <= 187
    assert all(pool.capacity == 187 // pools for pool in budget.pools.values())
    assert all(pool.consumer_concurrency < pool.capacity for pool in budget.pools.values())
    with pytest.raises(TopologyError, match="max_connections = 100"):
        plan_budget(processes, shards=4, max_connections=100)


def test_the_kept_state_refuses_another_shard_count(tmp_path: Path) -> None:
    state = State()
    state.claim_ports(replicas=1, shards=2, ports=CountingPorts())
    state.save(tmp_path / "state.json")
    again = State.load(tmp_path / "state.json")
    before = (again.primary_port, list(again.replica_ports), again.redis_port)
    again.claim_ports(replicas=2, shards=2, ports=CountingPorts())
    assert (again.primary_port, again.replica_ports[:1], again.redis_port) == (
        before[0],
        before[1],
        before[2],
    )
    assert len(again.replica_ports) == 2
    with pytest.raises(ServersError, match="--shards 2"):
        again.claim_ports(replicas=1, shards=3, ports=CountingPorts())
