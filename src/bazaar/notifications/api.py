"""Notifications' HTTP routes: the caller's in-app notifications and the admin's webhooks."""

from litestar import Router, delete, get, post
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
from bazaar.platform.openapi import problems
from bazaar.platform.pagination import Cursor, Limit, Page
from bazaar.platform.web import CurrentUser


def _notification(notification: Notification) -> NotificationRead:
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


def create_router(db: Database, settings: NotificationsSettings) -> Router:
    @get("/notifications", summary="The caller's in-app notifications, newest first")
    async def list_notifications(
        user: CurrentUser, limit: Limit = 20, cursor: Cursor = None
    ) -> Page[NotificationRead]:
        async with db.read() as session:
            page = await service.list_notifications(session, user.id, limit, cursor)
        return Page([_notification(n) for n in page.items], page.next_cursor)

    @post(
        "/notifications/{notification_id:str}/read",
        status_code=HTTP_200_OK,
        summary="Mark one of the caller's notifications read",
        responses=problems(404),
        description="Idempotent: marking a read notification again changes nothing. 404 for "
        "another user's notification.",
    )
    async def read_notification(
        user: CurrentUser, notification_id: FromPath[str]
    ) -> NotificationRead:
        async with db.write() as session:
            notification = await service.mark_read(session, user.id, notification_id)
        return _notification(notification)

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
    async def create_webhook(user: CurrentUser, data: JSONBody[WebhookCreate]) -> WebhookCreated:
        user.require_admin()
        async with db.write() as session:
            webhook = await webhooks.create_webhook(session, data.url, list(data.events), settings)
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
        user: CurrentUser, limit: Limit = 20, cursor: Cursor = None
    ) -> Page[WebhookRead]:
        user.require_admin()
        async with db.read() as session:
            page = await webhooks.list_webhooks(session, limit, cursor)
        return Page([_webhook(w) for w in page.items], page.next_cursor)

    @delete(
        "/webhooks/{webhook_id:str}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Remove a webhook (admin); its undelivered events are not sent",
        responses=problems(403, 404),
    )
    async def delete_webhook(user: CurrentUser, webhook_id: FromPath[str]) -> None:
        user.require_admin()
        async with db.write() as session:
            await webhooks.delete_webhook(session, webhook_id)

    return Router(
        "/v1",
        route_handlers=[
            list_notifications,
            read_notification,
            create_webhook,
            list_webhooks,
            delete_webhook,
        ],
        tags=["notifications"],
        security=[{"bearer": []}],
    )
