"""Notifications' settings: defaults, overrides, and a bad value named in the error."""

import pytest

from bazaar.notifications.settings import NotificationsSettings
from bazaar.platform.settings import Env, SettingsError


def test_defaults_and_overrides() -> None:
    default = NotificationsSettings.from_env(Env({}))
    assert default.email_from == "Bazaar <no-reply@bazaar.localhost>"
    assert default.mailer_poll_interval == 0.5
    assert default.webhook_allow_private is False
    custom = NotificationsSettings.from_env(
        Env(
            {
                "BAZAAR_EMAIL_FROM": "Shop <shop@example.com>",
                "BAZAAR_WEBHOOK_ATTEMPTS": "4",
                "BAZAAR_WEBHOOK_ALLOW_PRIVATE": "true",
            }
        )
    )
    assert (custom.email_from, custom.webhook_attempts) == ("Shop <shop@example.com>", 4)
    assert custom.webhook_allow_private is True


def test_backoff_doubles_up_to_the_cap() -> None:
    settings = NotificationsSettings.from_env(
        Env({"BAZAAR_WEBHOOK_FIRST_DELAY": "2", "BAZAAR_NOTIFICATION_MAX_RETRY_DELAY": "10"})
    )
    delays = [settings.webhook_backoff.delay(n) for n in (1, 2, 3, 4)]
    for delay, base in zip(delays, (2, 4, 8, 10), strict=True):
        assert 0.9 * base <= delay <= 1.1 * base  # the base, and a jitter of 10% either way


def test_a_bad_value_names_its_variable() -> None:
    with pytest.raises(SettingsError, match="BAZAAR_WEBHOOK_ATTEMPTS"):
        NotificationsSettings.from_env(Env({"BAZAAR_WEBHOOK_ATTEMPTS": "zero"}))
    with pytest.raises(SettingsError, match="BAZAAR_WEBHOOK_ALLOW_PRIVATE"):
        NotificationsSettings.from_env(Env({"BAZAAR_WEBHOOK_ALLOW_PRIVATE": "sometimes"}))
