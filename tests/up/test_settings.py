"""What `bazaar up` takes from the caller's settings, read once by the command line: the data
dir, the servers the caller names, and every `BAZAAR_*` variable, which its processes get under
those `up` decides itself; a process it starts inherits nothing else of Bazaar's."""

import os
from pathlib import Path

import pytest

from bazaar.platform.settings import Env
from bazaar.runtime.cluster.folder import child_environment, read_env_file, write_env_file
from bazaar.runtime.cluster.servers import State
from bazaar.runtime.cluster.settings import UpSettings
from bazaar.runtime.cluster.topology import Topology
from bazaar.runtime.cluster.up import _environment

CALLER = {
    "BAZAAR_REDIS_URL": "redis://cache.example:6379/0",
    "BAZAAR_SMTP_URL": "  ",
    "BAZAAR_LOG_LEVEL": "warning",
    "BAZAAR_CATALOG_URL": "http://catalog.example",
    "BAZAAR_ORDER_SHARD_URLS": "postgresql://a/x,postgresql://b/x",
    "PATH": "/usr/bin",
}


def test_up_reads_the_data_dir_and_the_servers_the_caller_names(tmp_path: Path) -> None:
    settings = UpSettings.from_env(Env({**CALLER, "BAZAAR_DATA_DIR": str(tmp_path / "data")}))
    assert settings.folder.root == tmp_path.resolve() / "data" / "up"
    assert settings.redis_url == "redis://cache.example:6379/0"
    # an empty variable is an unset one: `up` runs its own mail sink
    assert (settings.database_url, settings.smtp_url, settings.broker_url) == (None, None, None)
    assert "PATH" not in settings.passed_on and "BAZAAR_SMTP_URL" not in settings.passed_on


def test_without_a_data_dir_up_keeps_everything_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert UpSettings.from_env(Env({})).folder.root == tmp_path.resolve() / ".bazaar" / "up"


def test_the_processes_get_the_callers_settings_under_those_up_decides(tmp_path: Path) -> None:
    database = "postgresql://db.example/bazaar"  # the caller's: `up` runs no PostgreSQL
    caller = {**CALLER, "BAZAAR_DATA_DIR": str(tmp_path), "BAZAAR_DATABASE_URL": database}
    settings = UpSettings.from_env(Env(caller))
    state = State(redis_port=6390, smtp_port=2525, broker_port=5680)
    environment = _environment(settings, state, Topology(shards=3, port=8100), postgres=None)
    assert environment == {
        "BAZAAR_DATA_DIR": str(tmp_path.resolve()),
        "BAZAAR_DATABASE_URL": database,
        "BAZAAR_REDIS_URL": "redis://cache.example:6379/0",
        "BAZAAR_LOG_LEVEL": "warning",
        "BAZAAR_CATALOG_URL": "http://127.0.0.1:8100",
        "BAZAAR_ORDER_SHARDS": "3",
        "BAZAAR_LOG_JSON": "true",
        "BAZAAR_SMTP_URL": "smtp://127.0.0.1:2525",
        "BAZAAR_BROKER_URL": "amqp://guest:guest@127.0.0.1:5680/",
    }


def test_a_started_process_inherits_no_bazaar_setting_but_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BAZAAR_DATABASE_URL", "postgresql://elsewhere/bazaar")
    child = child_environment({"BAZAAR_DATA_DIR": "/srv/bazaar", "BAZAAR_TARGET": "auto"})
    assert child["PATH"] == os.environ["PATH"]
    assert {name: value for name, value in child.items() if name.startswith("BAZAAR_")} == {
        "BAZAAR_DATA_DIR": "/srv/bazaar",
        # its environment is complete: no `.env` file read, no running `bazaar up` looked for
        "BAZAAR_ENV_FILE": "",
        "BAZAAR_TARGET": "environment",
    }


def test_up_passes_on_no_env_file_nor_target_to_its_processes(tmp_path: Path) -> None:
    caller = {
        **CALLER,
        "BAZAAR_DATA_DIR": str(tmp_path),
        "BAZAAR_ENV_FILE": str(tmp_path / "staging.env"),
        "BAZAAR_TARGET": "auto",
    }
    passed_on = UpSettings.from_env(Env(caller)).passed_on
    assert "BAZAAR_ENV_FILE" not in passed_on and "BAZAAR_TARGET" not in passed_on
    assert passed_on["BAZAAR_LOG_LEVEL"] == "warning"


def test_an_env_file_is_the_owners_alone_and_reads_back_as_written(tmp_path: Path) -> None:
    environment = {"BAZAAR_DATABASE_URL": "postgresql://u:p=w@h/db", "BAZAAR_LOG_JSON": "true"}
    path = tmp_path / "env"
    write_env_file(path, environment)
    assert oct(path.stat().st_mode)[-3:] == "600"
    assert read_env_file(path) == environment
