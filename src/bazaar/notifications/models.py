"""Notifications' tables: recipients learnt from identity's events, in-app notifications,
outgoing emails, webhooks and their deliveries."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bazaar.platform.db import Timestamp


class DeliveryStatus(StrEnum):
    """Where an email (`pending`, `sent`, `failed`) or a webhook delivery (`pending`,
    `delivered`, `failed`, `cancelled`) stands."""

    PENDING = "pending"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Base(DeclarativeBase):
    type_annotation_map = {datetime: Timestamp()}


class Recipient(Base):
    """Who a user is, as `user.registered` said: notifications never read identity's tables."""

    __tablename__ = "recipient"

    user_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    name: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime]


class Notification(Base):
    """An in-app notification; one per (kind, reference), so a re-delivered event adds none."""

    __tablename__ = "notification"
    __table_args__ = (
        UniqueConstraint("kind", "reference", name="uq_notification_kind_reference"),
        Index("ix_notification_user_id_id", "user_id", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(36))
    kind: Mapped[str] = mapped_column(String(50))
    reference: Mapped[str] = mapped_column(String(100))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    read_at: Mapped[datetime | None]


class OutgoingEmail(Base):
    """An email to send: written in the transaction that decided it, sent by the mailer."""

    __tablename__ = "outgoing_email"
    __table_args__ = (
        UniqueConstraint("kind", "reference", name="uq_outgoing_email_kind_reference"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(36))
    kind: Mapped[str] = mapped_column(String(50))
    reference: Mapped[str] = mapped_column(String(100))
    to_address: Mapped[str] = mapped_column(String(254))
    to_name: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]


class Webhook(Base):
    __tablename__ = "webhook"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[str]] = mapped_column(JSON)
    secret: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]


class WebhookDelivery(Base):
    """One event for one webhook: its exact body is fixed when created, so every retry carries
    the same bytes and the same signature."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        UniqueConstraint("webhook_id", "event_id", name="uq_webhook_delivery_webhook_event"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    webhook_id: Mapped[str] = mapped_column(ForeignKey("webhook.id"))
    event_id: Mapped[str] = mapped_column(String(36))
    event_type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int]
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]
