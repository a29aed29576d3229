"""Notifications' use cases: learn recipients, notify customers of their orders in the app and by
email (a job the mailer runs), list and read notifications.

Each order event produces at most one notification and one email: both rows are unique per
(kind, order id), so an event delivered twice, even under two envelope ids, adds nothing.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update

from bazaar.identity.events import UserRegistered
from bazaar.notifications.models import DeliveryStatus, Notification, OutgoingEmail, Recipient
from bazaar.orders.events import OrderCancelled, OrderConfirmed
from bazaar.platform import jobs
from bazaar.platform.clock import utcnow
from bazaar.platform.db import Database, WriteSession
from bazaar.platform.errors import NotFound
from bazaar.platform.ids import new_id
from bazaar.platform.money import Money
from bazaar.platform.pagination import Page, decode_cursor, page_of
from bazaar.platform.queries import Query
from bazaar.platform.statements import insert_ignoring_duplicates, run

EMAIL_JOB = "email"
"""The job that sends one outgoing email (notifications/mailer.py)."""

ORDER_CONFIRMED = "order_confirmed"
ORDER_CANCELLED = "order_cancelled"

CANCEL_REASONS = {
    "out_of_stock": "some of its items are out of stock",
    "payment_declined": "the payment was declined",
    "payment_failed": "the payment could not be processed",
    "customer_cancelled": "you cancelled it",
}

# ISO 4217 minor units where they are not 2.
_EXPONENTS = {"JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "BHD": 3, "KWD": 3, "OMR": 3}


class RecipientUnknown(Exception):
    """The customer's `user.registered` has not arrived yet: the bus retries the event."""


@dataclass(frozen=True)
class Message:
    kind: str
    reference: str
    subject: str
    body: str


def format_money(money: Money) -> str:
    """`12345 USD` -> `123.45 USD`: minor units shown with the currency's own decimals."""
    exponent = _EXPONENTS.get(money.currency, 2)
    sign = "-" if money.amount < 0 else ""
    whole, fraction = divmod(abs(money.amount), 10**exponent)
    decimals = f".{fraction:0{exponent}d}" if exponent else ""
    return f"{sign}{whole:,}{decimals} {money.currency}"


async def record_recipient(session: WriteSession, event: UserRegistered) -> Recipient:
    """Remember (or update) where a user's emails go."""
    # A display name is put in an email header: no line breaks may reach it.
    name = " ".join(event.name.split())
    recipient = await session.get(Recipient, event.user_id)
    if recipient is None:
        recipient = Recipient(
            user_id=event.user_id, email=event.email, name=name, updated_at=utcnow()
        )
        session.add(recipient)
    else:
        recipient.email, recipient.name, recipient.updated_at = event.email, name, utcnow()
    return recipient


async def notify_order_confirmed(session: WriteSession, event: OrderConfirmed) -> bool:
    """One notification and one email for a confirmed order; False when they exist already."""
    recipient = await _recipient(session, event.customer_id)
    total = format_money(event.total)
    message = Message(
        kind=ORDER_CONFIRMED,
        reference=event.order_id,
        subject=f"Your order {event.order_id} is confirmed",
        body=(
            f"Hello {recipient.name},\n\n"
            f"thank you for your order {event.order_id}. We received your payment of {total} "
            f"and your order is confirmed.\n\nPayment: {event.payment_id}\n"
        ),
    )
    return await _notify(session, recipient, message)


async def notify_order_cancelled(session: WriteSession, event: OrderCancelled) -> bool:
    """One notification and one email for a cancelled order; False when they exist already."""
    recipient = await _recipient(session, event.customer_id)
    reason = CANCEL_REASONS.get(event.reason, event.reason.replace("_", " "))
    # A declined or failed payment has an id too, but only a captured one is refunded.
    captured = event.payment_id is not None and event.reason == "customer_cancelled"
    refund = (
        f"The payment of {format_money(event.total)} is refunded.\n"
        if captured
        else "You have not been charged.\n"
    )
    message = Message(
        kind=ORDER_CANCELLED,
        reference=event.order_id,
        subject=f"Your order {event.order_id} is cancelled",
        body=(
            f"Hello {recipient.name},\n\n"
            f"your order {event.order_id} ({format_money(event.total)}) is cancelled: "
            f"{reason}.\n{refund}"
        ),
    )
    return await _notify(session, recipient, message)


async def _recipient(session: WriteSession, user_id: str) -> Recipient:
    found = (await run(session, _RECIPIENT, {"user_id": user_id})).rows
    if not found:
        raise RecipientUnknown(f"no recipient {user_id} yet (user.registered not handled)")
    [(email, name)] = found
    return Recipient(user_id=user_id, email=email, name=name)


async def _notify(session: WriteSession, recipient: Recipient, message: Message) -> bool:
    now = utcnow()
    created = await insert_ignoring_duplicates(
        session,
        Notification.__table__,
        id=new_id(),
        user_id=recipient.user_id,
        kind=message.kind,
        reference=message.reference,
        subject=message.subject,
        body=message.body,
        created_at=now,
    )
    if not created:
        return False
    email_id = new_id()
    queued = await insert_ignoring_duplicates(
        session,
        OutgoingEmail.__table__,
        id=email_id,
        user_id=recipient.user_id,
        kind=message.kind,
        reference=message.reference,
        to_address=recipient.email,
        to_name=recipient.name,
        subject=message.subject,
        body=message.body,
        status=DeliveryStatus.PENDING,
        attempts=0,
        created_at=now,
    )
    if queued:
        jobs.enqueue(session, EMAIL_JOB, {"email_id": email_id})
    return True


@dataclass(frozen=True, slots=True)
class NotificationView:
    """A notification as listed: what `Notification` shows, read without the ORM's cost."""

    id: str
    kind: str
    subject: str
    body: str
    created_at: datetime
    read_at: datetime | None


_notifications = Notification.__table__
_LISTED = (
    select(
        _notifications.c.id,
        _notifications.c.kind,
        _notifications.c.subject,
        _notifications.c.body,
        _notifications.c.created_at,
        _notifications.c.read_at,
    )
    .where(_notifications.c.user_id == bindparam("user_id"))
    .order_by(_notifications.c.id.desc())
    .limit(bindparam("limit"))
)
_FIRST_PAGE = Query(_LISTED)
_NEXT_PAGE = Query(_LISTED.where(_notifications.c.id < bindparam("before")))


async def list_notifications(
    db: Database, user_id: str, limit: int, cursor: str | None
) -> Page[NotificationView]:
    """The user's notifications, newest first (ids are time-ordered), in one statement on the
    driver itself where it can (`Database.rows`): a customer looks often."""
    position = decode_cursor(cursor)
    params: dict[str, Any] = {"user_id": user_id, "limit": limit + 1}
    if position is None:
        rows = await db.rows(_FIRST_PAGE, params)
    else:
        rows = await db.rows(_NEXT_PAGE, params | {"before": str(position[0])})
    listed = [NotificationView(*row) for row in rows]
    return page_of(listed, limit, lambda notification: (notification.id,))


async def mark_read(session: WriteSession, user_id: str, notification_id: str) -> Notification:
    """Mark one of the user's notifications read (again is fine); NotFound for anyone else's."""
    notification = await session.get(Notification, notification_id)
    if notification is None or notification.user_id != user_id:
        raise NotFound("No such notification")
    if notification.read_at is None:
        notification.read_at = utcnow()
    return notification


async def mark_email_sent(session: WriteSession, email_id: str) -> None:
    await run(session, _SENT, {"email_id": email_id, "now": utcnow()})


async def record_email_failure(
    session: WriteSession, email_id: str, error: str, *, final: bool
) -> None:
    """Count a failed try; the job queue decides when to try again, and `final` ends it."""
    email = await session.get(OutgoingEmail, email_id)
    if email is None or email.status != DeliveryStatus.PENDING:
        return
    email.attempts += 1
    email.last_error = error[:2000]
    if final:
        email.status = DeliveryStatus.FAILED


_RECIPIENT = Query(
    select(Recipient.email, Recipient.name).where(Recipient.user_id == bindparam("user_id"))
)
_SENT = Query(
    update(OutgoingEmail)
    .where(
        OutgoingEmail.id == bindparam("email_id"),
        OutgoingEmail.status == DeliveryStatus.PENDING,
    )
    .values(
        status=DeliveryStatus.SENT, sent_at=bindparam("now"), attempts=OutgoingEmail.attempts + 1
    )
)
