"""Notifications' parts for a process: routes, schema, event handlers, mailer, webhook sender."""

from pathlib import Path

from bazaar.notifications import api, handlers, models
from bazaar.notifications.mailer import Mailer
from bazaar.notifications.settings import NotificationsSettings
from bazaar.notifications.webhook_sender import WebhookSender
from bazaar.platform.db import Database
from bazaar.platform.migrations import ServiceSchema
from bazaar.platform.parts import ServiceParts

SCHEMA = ServiceSchema("bazaar.notifications", models.Base.metadata)


def build(
    db: Database, settings: NotificationsSettings, *, smtp_url: str | None, data_dir: Path
) -> ServiceParts:
    mailer = Mailer(db, settings, smtp_url=smtp_url, mail_dir=data_dir / "mail")
    sender = WebhookSender(db, settings)
    return ServiceParts(
        "notifications",
        SCHEMA,
        [db],
        api.create_router(db, settings),
        subscriptions=handlers.subscriptions(db),
        background=[mailer.run, sender.run],
    )
