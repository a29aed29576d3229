"""Payments' settings: which provider, and how its transient errors are retried."""

from dataclasses import dataclass

from bazaar.platform.settings import Env, SettingsError

PROVIDERS = ("sandbox",)


@dataclass(frozen=True)
class PaymentsSettings:
    provider: str
    retry_attempts: int
    """Provider calls per charge or refund, the first included."""
    retry_backoff: float
    """Seconds before the first retry; each later one waits twice as long."""

    @classmethod
    def from_env(cls, env: Env) -> "PaymentsSettings":
        provider = env.text("PAYMENT_PROVIDER", "sandbox").lower()
        if provider not in PROVIDERS:
            raise SettingsError(
                "PAYMENT_PROVIDER", f"expected one of {', '.join(PROVIDERS)}, got {provider!r}"
            )
        return cls(
            provider=provider,
            retry_attempts=env.integer("PAYMENT_RETRY_ATTEMPTS", 3, minimum=1, maximum=10),
            retry_backoff=env.number("PAYMENT_RETRY_BACKOFF", 0.05),
        )
