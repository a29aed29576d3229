"""`bazaar up --pgbouncer`'s configuration: PgBouncer's server pools stay under the server's
max_connections while the processes keep full client pools, and the processes reach every
server through its own PgBouncer (the integration test runs the same configuration)."""

import configparser
from pathlib import Path

import pytest

from bazaar.platform.postgres import connect_args
from bazaar.platform.settings import Env, PlatformSettings, SettingsError
from bazaar.runtime.cluster import pgbouncer
from bazaar.runtime.cluster.budget import KIND_CAPACITY, RESERVED, TOOLS, plan_pooled_budget
from bazaar.runtime.cluster.topology import PortSource, Topology, TopologyError, parse_instances
from tests.up.test_configs import CountingPorts

ENVIRONMENT = {
    "BAZAAR_DATABASE_URL": "postgresql://postgres@127.0.0.1:5500/bazaar",
    "BAZAAR_REPLICA_URLS": "postgresql://postgres@127.0.0.1:5501/bazaar,"
    "postgresql://reader:s3cret@127.0.0.1:5502/bazaar",
}


def test_the_server_side_stays_under_max_connections_while_clients_keep_full_pools() -> None:
    counts = parse_instances("catalog=8,orders=6")
    processes = Topology(counts).processes(CountingPorts())
    budget = plan_pooled_budget(processes, shards=4, max_connections=100)
    assert budget.server is not None
    databases = 4 + 4  # identity, catalog, payments, notifications; 4 order shards
    assert budget.total == budget.server.per_database * databases <= 100 - RESERVED - TOOLS
    assert budget.server.limit == 100 - RESERVED - TOOLS
    assert budget.pools["catalog-7"].capacity == KIND_CAPACITY["serve"]
    assert budget.pools["orders-worker"].capacity == KIND_CAPACITY["worker"]
    clients = sum(
        budget.pools[p.name].capacity * (4 if p.service == "orders" else 1) for p in processes
    )
    assert clients > 100 and budget.server.clients >= clients
    with pytest.raises(TopologyError, match="max_connections = 20"):
        plan_pooled_budget(processes, shards=4, max_connections=20)


def test_each_server_gets_its_pgbouncer_and_the_processes_go_through_them(
    tmp_path: Path,
) -> None:
    processes = Topology().processes(CountingPorts())
    budget = plan_pooled_budget(processes, shards=2, max_connections=200)
    bouncers = pgbouncer.plan(ENVIRONMENT, tmp_path, PortSource(), budget.server)
    assert [b.name for b in bouncers] == [
        "pgbouncer-primary",
        "pgbouncer-replica-1",
        "pgbouncer-replica-2",
    ]
    pooled = pgbouncer.through(ENVIRONMENT, bouncers)
    assert pooled["BAZAAR_DATABASE_POOLER"] == "pgbouncer"
    assert pooled["BAZAAR_DATABASE_URL"] == (
        f"postgresql://postgres@127.0.0.1:{bouncers[0].port}/bazaar"
    )
    assert pooled["BAZAAR_REPLICA_URLS"].split(",") == [
        f"postgresql://postgres@127.0.0.1:{bouncers[1].port}/bazaar",
        f"postgresql://reader:s3cret@127.0.0.1:{bouncers[2].port}/bazaar",
    ]
    ini = configparser.ConfigParser()
    ini.read_string(bouncers[2].config.read_text())
    assert ini["databases"]["*"].startswith("host=127.0.0.1 port=5502 ")
    assert "SET lock_timeout = 2000" in ini["databases"]["*"]
    settings = ini["pgbouncer"]
    assert settings["pool_mode"] == "transaction"
    assert settings["server_reset_query"] == "DEALLOCATE ALL"
    assert settings["auth_type"] == "scram-sha-256"  # the server has a password
    assert int(settings["default_pool_size"]) * 6 <= int(settings["max_user_connections"])
    assert bouncers[2].users.read_text() == '"reader" "s3cret"\n'
    assert oct(bouncers[2].users.stat().st_mode)[-3:] == "600"
    ini.read_string(bouncers[0].config.read_text())
    assert ini["pgbouncer"]["auth_type"] == "trust"


def test_without_the_flag_nothing_changes(tmp_path: Path) -> None:
    assert pgbouncer.plan(ENVIRONMENT, tmp_path, PortSource(), None) == []
    assert pgbouncer.through(ENVIRONMENT, []) == ENVIRONMENT


def test_the_pooler_setting_switches_the_connect_arguments() -> None:
    direct = connect_args(None, 30)
    assert direct["server_settings"] == {"lock_timeout": "2000"}
    pooled = connect_args("pgbouncer", 30)
    assert "server_settings" not in pooled  # PgBouncer refuses unknown startup parameters
    assert pooled["statement_cache_size"] == pooled["prepared_statement_cache_size"] == 0
    names = {pooled["prepared_statement_name_func"]() for _ in range(100)}
    assert len(names) == 100


def test_an_unknown_pooler_is_refused_naming_the_variable() -> None:
    with pytest.raises(SettingsError, match="BAZAAR_DATABASE_POOLER"):
        PlatformSettings.from_env(Env({"BAZAAR_DATABASE_POOLER": "pgpool"}))
    assert (
        PlatformSettings.from_env(Env({"BAZAAR_DATABASE_POOLER": "none"})).database_pooler is None
    )
