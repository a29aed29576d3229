"""Notifications' request and response bodies."""

from datetime import datetime
from typing import Annotated, Literal

import msgspec

WebhookEvent = Literal[
    "order.placed", "order.confirmed", "order.cancelled", "payment.succeeded", "payment.refunded"
]


class NotificationRead(msgspec.Struct):
    id: str
    kind: str
    subject: str
    body: str
    created_at: datetime
    read: bool


class WebhookCreate(msgspec.Struct):
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]
    events: Annotated[list[WebhookEvent], msgspec.Meta(min_length=1, max_length=20)]


class WebhookRead(msgspec.Struct):
    id: str
    url: str
    events: list[str]
    created_at: datetime


class WebhookCreated(msgspec.Struct):
    """A new webhook with its signing secret: the only time the secret is shown."""

    id: str
    url: str
    events: list[str]
    secret: str
    created_at: datetime
