"""All settings of a process, read once at start from the environment."""

from collections.abc import Mapping
from dataclasses import dataclass

from bazaar.catalog.settings import CatalogSettings
from bazaar.identity.settings import IdentitySettings
from bazaar.notifications.settings import NotificationsSettings
from bazaar.payments.settings import PaymentsSettings
from bazaar.platform.settings import Env, PlatformSettings


@dataclass(frozen=True)
class Settings:
    platform: PlatformSettings
    identity: IdentitySettings
    payments: PaymentsSettings
    catalog: CatalogSettings
    notifications: NotificationsSettings

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = Env(dict(environ)) if environ is not None else Env()
        return cls(
            platform=PlatformSettings.from_env(env),
            identity=IdentitySettings.from_env(env),
            payments=PaymentsSettings.from_env(env),
            catalog=CatalogSettings.from_env(env),
            notifications=NotificationsSettings.from_env(env),
        )
