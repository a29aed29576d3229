"""Where the data commands work when no `bazaar up` runs, and what they say about it; `bazaar
config`; the `.env` file. (With a `bazaar up` running: tests/up/test_up.py.)"""

import os
from pathlib import Path

import pytest

from bazaar.runtime.cluster.folder import Folder, write_env_file
from bazaar.runtime.cluster.record import RunBudget, RunRecord, RunTopology

SECRET_URL = "postgresql://bazaar:hunter2@127.0.0.1:5432/bazaar_never"


def _settings(output: str) -> dict[str, str]:
    lines = [line.partition(" = ") for line in output.splitlines() if " = " in line]
    return {name: value for name, _, value in lines}


def test_without_a_running_up_the_embedded_default_is_used_and_said(cli, tmp_path: Path) -> None:
    migrated = cli("migrate")
    assert migrated.exit_code == 0, migrated.output
    assert migrated.stderr.startswith(f"Using the embedded default under {tmp_path / 'data'}")
    assert (tmp_path / "data" / "identity.db").exists()


def _stale_up(data_dir: Path, supervisord_pid: int) -> None:
    """The folder a `bazaar up` leaves when it was killed, naming a server nobody runs."""
    folder = Folder(data_dir)
    folder.root.mkdir(parents=True)
    for path in (folder.env_file, folder.tools_env_file):
        write_env_file(path, {"BAZAAR_DATABASE_URL": SECRET_URL, "BAZAAR_DATA_DIR": str(data_dir)})
    topology = RunTopology({"catalog": 1}, 1, 2, 8000, 8404, {})
    RunRecord(topology, [], RunBudget(100, 50), supervisord_pid).save(folder.run)


@pytest.mark.parametrize("pid", ["gone", "alive but no supervisord"])
def test_a_stale_up_folder_is_not_used(cli, tmp_path: Path, pid: str) -> None:
    # a pid no process can have; or a live process that answers on no supervisord socket
    supervisord_pid = int(Path("/proc/sys/kernel/pid_max").read_text()) if pid == "gone" else 1
    _stale_up(tmp_path / "data", supervisord_pid)
    created = cli("admin", "create", "--email", "root@example.com", stdin="s3cret-pass\n")
    assert created.exit_code == 0, created.output
    assert "Using the embedded default under" in created.stderr
    assert "bazaar up" not in created.stderr
    assert (tmp_path / "data" / "identity.db").exists()


def test_the_databases_the_environment_names_are_said_with_the_password_masked(cli) -> None:
    shown = cli("config", BAZAAR_DATABASE_URL=SECRET_URL, BAZAAR_BROKER_URL="amqp://u:pw@h/")
    assert shown.exit_code == 0, shown.output
    assert shown.stderr.startswith(
        "Using the databases the environment names (BAZAAR_DATABASE_URL"
        " postgresql://bazaar:***@127.0.0.1:5432/bazaar_never, BAZAAR_BROKER_URL amqp://u:***@h/)"
    )
    assert "hunter2" not in shown.output and ":pw@" not in shown.output
    settings = _settings(shown.stdout)
    assert settings["target"].startswith("environment")
    assert settings["platform.database_url"] == (
        "postgresql://bazaar:***@127.0.0.1:5432/bazaar_never"
    )


def test_target_environment_is_the_only_other_choice(cli) -> None:
    refused = cli("migrate", BAZAAR_TARGET="somewhere")
    assert refused.exit_code == 2
    assert "BAZAAR_TARGET: expected auto or environment" in refused.output
    assert cli("config", BAZAAR_TARGET="environment").exit_code == 0


def test_config_prints_every_setting_once_with_the_secrets_masked(cli) -> None:
    secrets = {
        "BAZAAR_JWT_PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----abc",
        "BAZAAR_REDIS_URL": "redis://:redis-pass@127.0.0.1:6379/0",
        "BAZAAR_SMTP_URL": "smtp://mailer:smtp-pass@127.0.0.1:25",
    }
    shown = cli("config", BAZAAR_PRODUCT_MAX_AGE="9", **secrets)
    assert shown.exit_code == 0, shown.output
    for secret in ("BEGIN PRIVATE", "redis-pass", "smtp-pass"):
        assert secret not in shown.output
    settings = _settings(shown.stdout)
    assert len(settings) == len(shown.stdout.splitlines())  # one per line
    assert settings["platform.jwt_private_key"] == "*** (set)"
    assert settings["platform.redis_url"] == "redis://:***@127.0.0.1:6379/0"
    assert settings["platform.smtp_url"] == "smtp://mailer:***@127.0.0.1:25"
    assert settings["catalog.product_max_age"] == "9"
    assert settings["identity.access_token_ttl"] == "900"  # a TTL is no token
    assert settings["process.pool.size"] == "10"
    assert settings["platform.order_shard_map"] == "0-127=0,128-255=1"
    assert settings["target"].startswith("embedded")


def test_a_dotenv_file_is_read_under_the_environment(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("BAZAAR_PRODUCT_MAX_AGE", "BAZAAR_LOG_LEVEL", "BAZAAR_EMAIL_FROM"):
        monkeypatch.delenv(name, raising=False)  # what the file sets is undone afterwards
    (tmp_path / ".env").write_text(
        "# the shop's settings\nBAZAAR_PRODUCT_MAX_AGE=7\nBAZAAR_LOG_LEVEL=debug\n"
        'BAZAAR_EMAIL_FROM="Shop <shop@example.com>"\n'
    )
    shown = cli("config", BAZAAR_ENV_FILE=None, BAZAAR_LOG_LEVEL="error")
    assert shown.exit_code == 0, shown.output
    settings = _settings(shown.stdout)
    assert settings["catalog.product_max_age"] == "7"  # from the file
    assert settings["notifications.email_from"] == "Shop <shop@example.com>"
    assert settings["platform.log_level"] == "error"  # the environment wins


def test_another_env_file_is_named_and_an_empty_name_reads_none(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BAZAAR_PRODUCT_MAX_AGE", raising=False)
    (tmp_path / ".env").write_text("BAZAAR_PRODUCT_MAX_AGE=7\n")
    (tmp_path / "staging.env").write_text("BAZAAR_PRODUCT_MAX_AGE=5\n")
    unread = cli("config")  # the fixture's BAZAAR_ENV_FILE is empty
    assert _settings(unread.stdout)["catalog.product_max_age"] == "1"
    named = cli("config", BAZAAR_ENV_FILE="staging.env")
    assert _settings(named.stdout)["catalog.product_max_age"] == "5"
    os.environ.pop("BAZAAR_PRODUCT_MAX_AGE", None)
    missing = cli("config", BAZAAR_ENV_FILE="prod.env")
    assert missing.exit_code == 2
    assert "BAZAAR_ENV_FILE: no file 'prod.env'" in missing.output
