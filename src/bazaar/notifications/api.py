"""Notifications' HTTP routes: the caller's in-app notifications and the admin's webhooks."""

from litestar import Controller, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from bazaar.notifications import service, webhooks
from bazaar.notifications.models import Notification, Webhook
from bazaar.notifications.schemas import (
    NotificationRead,
    WebhookCreate,
    WebhookCreated,
    WebhookRead,
)
from bazaar.notifications.settings import NotificationsSettings
from bazaar.platform.db import Database
from bazaar.platform.idempotency import Claim
from bazaar.platform.openapi import problems
from bazaar.platform.pagination import Cursor, Limit, Page
from bazaar.platform.unit_of_work import (
    AnyRequest,
    Caller,
    ReadOnly,
    Transaction,
    UnitOfWork,
    provide_reader,
    provide_session,
    provide_work,
)
from bazaar.platform.web import BEARER, CurrentUser


class NotificationsWork(UnitOfWork):
    """Notifications' unit of work for one request: its database, and its settings (which say
    where webhooks may point)."""

    def __init__(
        self, db: Database, settings: NotificationsSettings, *, claim: Claim | None = None
    ) -> None:
        super().__init__(db, claim=claim)
        self.settings = settings


Work = NamedDependency[NotificationsWork]


def dependencies(db: Database, settings: NotificationsSettings) -> dict[str, Provide]:
    """What notifications' routes are given per request: `work` (a `NotificationsWork`),
    `session` and `reader`."""

    def database(_request: AnyRequest, _user: Caller) -> Database:
        return db

    def work(_request: AnyRequest, _user: Caller, claim: Claim | None) -> NotificationsWork:
        return NotificationsWork(db, settings, claim=claim)

    return {
        "work": provide_work(work),
        "session": provide_session(database),
        "reader": provide_reader(database),
    }


class NotificationController(Controller):
    path = "/v1"
    tags = ["notifications"]
    security = BEARER

    @get("/notifications", summary="The caller's in-app notifications, newest first")
    async def list_notifications(
        self, user: CurrentUser, work: Work, limit: Limit = 20, cursor: Cursor = None
    ) -> Page[NotificationRead]:
        page = await service.list_notifications(work.db, user.id, limit, cursor)
        return Page([_notification(n) for n in page.items], page.next_cursor)

    @post(
        "/notifications/{notification_id:str}/read",
        status_code=HTTP_200_OK,
        summary="Mark one of the caller's notifications read",
        responses=problems(404),
        description="Idempotent: marking a read notification again changes nothing. 404 for "
        "another user's notification.",
    )
    async def mark_notification_read(
        self, user: CurrentUser, notification_id: FromPath[str], session: Transaction
    ) -> NotificationRead:
        return _notification(await service.mark_read(session, user.id, notification_id))

    @post(
        "/webhooks",
        status_code=HTTP_201_CREATED,
        summary="Register a webhook (admin)",
        responses=problems(403),
        description="Events are POSTed as JSON `{id, type, occurred_at, data}` with the "
        "headers `Bazaar-Event-Id`, `Bazaar-Event-Type` and `Bazaar-Signature: sha256=<hex>`, "
        "the HMAC-SHA256 of the exact body bytes keyed with the returned `secret`. A 2xx "
        "acknowledges a delivery; anything else is retried with exponential backoff. A URL "
        "whose host is, or resolves to, a loopback, private, link-local, shared, multicast, "
        "reserved or cloud-metadata address is 422 (unless the operator allows private "
        "addresses), as is a host name that does not exist; the address is checked again "
        "before each delivery connects.",
    )
    async def create_webhook(
        self, user: CurrentUser, data: JSONBody[WebhookCreate], work: Work
    ) -> WebhookCreated:
        user.require_admin()
        events: list[str] = list(data.events)
        webhook = await webhooks.create_webhook(
            await work.session(), data.url, events, work.settings
        )
        return WebhookCreated(
            id=webhook.id,
            url=webhook.url,
            events=webhook.events,
            secret=webhook.secret,
            created_at=webhook.created_at,
        )

    @get(
        "/webhooks",
        summary="The registered webhooks, without their secrets (admin)",
        responses=problems(403),
    )
    async def list_webhooks(
        self, user: CurrentUser, reader: ReadOnly, limit: Limit = 20, cursor: Cursor = None
    ) -> Page[WebhookRead]:
        user.require_admin()
        page = await webhooks.list_webhooks(reader, limit, cursor)
        return Page([_webhook(w) for w in page.items], page.next_cursor)

    @delete(
        "/webhooks/{webhook_id:str}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Remove a webhook (admin); its undelivered events are not sent",
        responses=problems(403, 404),
    )
    async def delete_webhook(
        self, user: CurrentUser, webhook_id: FromPath[str], session: Transaction
    ) -> None:
        user.require_admin()
        await webhooks.delete_webhook(session, webhook_id)


CONTROLLERS = [NotificationController]


def _notification(notification: Notification | service.NotificationView) -> NotificationRead:
    return NotificationRead(
        id=notification.id,
        kind=notification.kind,
        subject=notification.subject,
        body=notification.body,
        created_at=notification.created_at,
        read=notification.read_at is not None,
    )


def _webhook(webhook: Webhook) -> WebhookRead:
    return WebhookRead(
        id=webhook.id, url=webhook.url, events=webhook.events, created_at=webhook.created_at
    )
