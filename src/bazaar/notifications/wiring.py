"""Notifications' parts for a process: routes, schema, event handlers, and the job worker
that sends emails and webhooks."""

from pathlib import Path

from bazaar.notifications import api, handlers, models
from bazaar.notifications.mailer import Mailer
from bazaar.notifications.settings import NotificationsSettings
from bazaar.notifications.webhook_sender import WebhookSender
from bazaar.platform.db import Database
from bazaar.platform.job_worker import JobWorker
from bazaar.platform.migrations import ServiceSchema
from bazaar.platform.parts import ServiceParts
from bazaar.platform.web import service_router

SCHEMA = ServiceSchema("bazaar.notifications", models.Base.metadata)


def build(
    db: Database, settings: NotificationsSettings, *, smtp_url: str | None, data_dir: Path
) -> ServiceParts:
    mailer = Mailer(db, settings, smtp_url=smtp_url, mail_dir=data_dir / "mail")
    sender = WebhookSender(db, settings)
    poll = min(settings.mailer_poll_interval, settings.webhook_poll_interval)
    worker = JobWorker(db, [mailer, sender], poll_interval=poll)
    return ServiceParts(
        "notifications",
        SCHEMA,
        [db],
        service_router(api.CONTROLLERS, api.dependencies(db, settings)),
        subscriptions=handlers.subscriptions(db),
        retired_consumers=handlers.RETIRED_CONSUMERS,
        background=[worker.run],
        closers=[sender.aclose, mailer.aclose],
    )
