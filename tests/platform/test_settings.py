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
