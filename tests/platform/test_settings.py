"""Settings: read once from BAZAAR_* variables; a bad value names its variable."""

import pytest

from bazaar.platform.settings import Env, PlatformSettings, SettingsError
from bazaar.runtime.config import Settings


def test_defaults_are_the_embedded_mode() -> None:
    settings = PlatformSettings.from_env(Env({}))
    assert settings.embedded
    assert settings.order_shards == 2
    assert settings.data_dir.name == ".bazaar"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("BAZAAR_ORDER_SHARDS", "many"),
        ("BAZAAR_ORDER_SHARDS", "0"),
        ("BAZAAR_DATABASE_URL", "mysql://localhost/bazaar"),
        ("BAZAAR_SMTP_URL", "http://mail"),
        ("BAZAAR_LOG_JSON", "perhaps"),
        ("BAZAAR_ACCESS_TOKEN_TTL", "-5"),
    ],
)
def test_a_bad_value_fails_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({variable: value})
    assert raised.value.variable == variable
    assert variable in str(raised.value)


def test_settings_are_frozen() -> None:
    settings = PlatformSettings.from_env(Env({}))
    with pytest.raises(AttributeError):
        settings.order_shards = 3  # type: ignore[misc]


@pytest.mark.parametrize("variable", ["BAZAAR_REPLICA_URLS"])
def test_servers_not_supported_yet_stop_the_start(variable: str, tmp_path) -> None:
    from bazaar.runtime.platform import build_platform

    url = {"BAZAAR_REDIS_URL": "redis://localhost", "BAZAAR_BROKER_URL": "amqp://localhost"}
    value = url.get(variable, "postgresql://localhost/bazaar")
    settings = Settings.from_env({variable: value, "BAZAAR_DATA_DIR": str(tmp_path)})
    with pytest.raises(SettingsError) as raised:
        build_platform(settings.platform)
    assert raised.value.variable == variable
