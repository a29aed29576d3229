"""Notifications' settings: the sender of emails, how mail and webhooks are retried, and
where webhooks may point."""

from dataclasses import dataclass

from bazaar.platform.jobs import Backoff
from bazaar.platform.settings import Env


@dataclass(frozen=True)
class NotificationsSettings:
    email_from: str
    mailer_poll_interval: float
    email_attempts: int
    email_first_delay: float
    smtp_timeout: float
    webhook_attempts: int
    webhook_first_delay: float
    webhook_timeout: float
    webhook_poll_interval: float
    webhook_allow_private: bool
    """Let webhooks reach loopback, private, link-local and other non-public addresses (a
    receiver on the developer's machine); cloud metadata addresses stay refused."""
    max_retry_delay: float

    @classmethod
    def from_env(cls, env: Env) -> "NotificationsSettings":
        return cls(
            email_from=env.text("EMAIL_FROM", "Bazaar <no-reply@bazaar.localhost>"),
            mailer_poll_interval=env.number("MAILER_POLL_INTERVAL", 0.5, minimum=0.001),
            email_attempts=env.integer("EMAIL_ATTEMPTS", 10, minimum=1),
            email_first_delay=env.number("EMAIL_FIRST_DELAY", 1.0, minimum=0.0),
            smtp_timeout=env.number("SMTP_TIMEOUT", 10.0, minimum=0.1),
            webhook_attempts=env.integer("WEBHOOK_ATTEMPTS", 8, minimum=1),
            webhook_first_delay=env.number("WEBHOOK_FIRST_DELAY", 1.0, minimum=0.0),
            webhook_timeout=env.number("WEBHOOK_TIMEOUT", 5.0, minimum=0.1),
            webhook_poll_interval=env.number("WEBHOOK_POLL_INTERVAL", 0.5, minimum=0.001),
            webhook_allow_private=env.flag("WEBHOOK_ALLOW_PRIVATE", False),
            max_retry_delay=env.number("NOTIFICATION_MAX_RETRY_DELAY", 3600.0, minimum=0.0),
        )

    @property
    def email_backoff(self) -> Backoff:
        return Backoff(self.email_attempts, self.email_first_delay, self.max_retry_delay)

    @property
    def webhook_backoff(self) -> Backoff:
        return Backoff(self.webhook_attempts, self.webhook_first_delay, self.max_retry_delay)
