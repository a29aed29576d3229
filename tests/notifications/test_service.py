"""Notifications' use cases against SQLite: recipients, order notifications, reading them."""

import msgspec
import pytest
from sqlalchemy import func, select

from bazaar.identity.events import UserRegistered
from bazaar.notifications import handlers, service
from bazaar.notifications.models import DeliveryStatus, Notification, OutgoingEmail, Recipient
from bazaar.orders.events import OrderCancelled, OrderConfirmed
from bazaar.platform.bus import RetryPolicy, deliver
from bazaar.platform.db import Database
from bazaar.platform.errors import NotFound
from bazaar.platform.events import Envelope
from bazaar.platform.money import Money
from bazaar.platform.schema import dead_letter
from tests.notifications.conftest import add_recipient

CONFIRMED = OrderConfirmed(
    order_id="order-1", customer_id="user-1", total=Money(123456, "USD"), payment_id="pay-1"
)
CANCELLED = OrderCancelled(
    order_id="order-2", customer_id="user-1", reason="out_of_stock", total=Money(500, "EUR")
)


async def count(db: Database, model: type) -> int:
    async with db.read() as session:
        return await session.scalar(select(func.count()).select_from(model))


def test_money_is_formatted_from_minor_units() -> None:
    assert service.format_money(Money(123456, "USD")) == "1,234.56 USD"
    assert service.format_money(Money(5, "EUR")) == "0.05 EUR"
    assert service.format_money(Money(1500, "JPY")) == "1,500 JPY"
    assert service.format_money(Money(1234, "KWD")) == "1.234 KWD"


async def test_a_registered_user_becomes_a_recipient_and_updates_replace_it(db: Database) -> None:
    await add_recipient(db, name="Ada\r\nBcc: evil@example.com")
    await add_recipient(db, email="ada@new.example.com")
    async with db.read() as session:
        recipient = await session.get_one(Recipient, "user-1")
    assert (recipient.email, recipient.name) == ("ada@new.example.com", "Ada")


async def test_a_confirmed_order_gives_one_notification_and_one_email(db: Database) -> None:
    await add_recipient(db)
    async with db.write() as session:
        assert await service.notify_order_confirmed(session, CONFIRMED) is True
    async with db.write() as session:
        assert await service.notify_order_confirmed(session, CONFIRMED) is False
    assert await count(db, Notification) == 1
    async with db.read() as session:
        email = (await session.scalars(select(OutgoingEmail))).one()
    assert email.status == DeliveryStatus.PENDING and email.to_address == "ada@example.com"
    assert email.kind == "order_confirmed" and "order-1" in email.subject
    assert "1,234.56 USD" in email.body


async def test_a_cancelled_order_says_why(db: Database) -> None:
    await add_recipient(db)
    async with db.write() as session:
        await service.notify_order_cancelled(session, CANCELLED)
    async with db.read() as session:
        notification = (await session.scalars(select(Notification))).one()
    assert notification.kind == "order_cancelled"
    assert "out of stock" in notification.body and "5.00 EUR" in notification.body
    assert "not been charged" in notification.body


async def test_only_a_captured_payment_is_said_to_be_refunded(db: Database) -> None:
    await add_recipient(db)
    declined = msgspec.structs.replace(
        CANCELLED, order_id="order-d", reason="payment_declined", payment_id="pay-1"
    )
    withdrawn = msgspec.structs.replace(
        CANCELLED, order_id="order-w", reason="customer_cancelled", payment_id="pay-2"
    )
    async with db.write() as session:
        await service.notify_order_cancelled(session, declined)
        await service.notify_order_cancelled(session, withdrawn)
    async with db.read() as session:
        bodies = {n.reference: n.body for n in await session.scalars(select(Notification))}
    assert "not been charged" in bodies["order-d"]
    assert "is refunded" in bodies["order-w"]


async def test_an_event_delivered_twice_notifies_once(db: Database) -> None:
    await add_recipient(db)
    subscription = next(s for s in handlers.subscriptions(db) if s.event_type == "order.confirmed")
    retry = RetryPolicy(attempts=2, first_delay=0.001)
    envelope = Envelope.wrap(CONFIRMED)
    # The same envelope again (the relay re-published it), then a copy under a new id.
    for delivered in (envelope, envelope, Envelope.wrap(CONFIRMED)):
        assert await deliver(subscription, delivered, retry) is True
    assert await count(db, Notification) == 1
    assert await count(db, OutgoingEmail) == 1


async def test_an_unknown_recipient_is_retried_then_dead_lettered(db: Database) -> None:
    async with db.write() as session:
        with pytest.raises(service.RecipientUnknown):
            await service.notify_order_confirmed(session, CONFIRMED)
    subscription = next(s for s in handlers.subscriptions(db) if s.event_type == "order.confirmed")
    handled = await deliver(
        subscription, Envelope.wrap(CONFIRMED), RetryPolicy(attempts=2, first_delay=0.001)
    )
    assert handled is False
    assert await count(db, Notification) == 0
    async with db.read() as session:
        letter = (await session.execute(select(dead_letter))).one()
    assert letter.type == "order.confirmed" and "RecipientUnknown" in letter.error


async def test_user_registered_through_the_bus_makes_a_recipient(db: Database) -> None:
    subscription = next(s for s in handlers.subscriptions(db) if s.event_type == "user.registered")
    event = UserRegistered(user_id="user-9", email="bo@example.com", name="Bo", role="customer")
    assert await deliver(subscription, Envelope.wrap(event), RetryPolicy(attempts=1)) is True
    async with db.read() as session:
        assert (await session.get_one(Recipient, "user-9")).email == "bo@example.com"


async def test_notifications_page_newest_first_and_only_the_owners(db: Database) -> None:
    await add_recipient(db)
    await add_recipient(db, user_id="user-2", email="bo@example.com")
    async with db.write() as session:
        for index in range(3):
            confirmed = OrderConfirmed(
                order_id=f"order-{index}",
                customer_id="user-1",
                total=Money(100, "USD"),
                payment_id=f"pay-{index}",
            )
            await service.notify_order_confirmed(session, confirmed)
        await service.notify_order_cancelled(
            session,
            OrderCancelled(
                order_id="other", customer_id="user-2", reason="x", total=Money(1, "USD")
            ),
        )
    first = await service.list_notifications(db, "user-1", 2, None)
    second = await service.list_notifications(db, "user-1", 2, first.next_cursor)
    references = [n.subject for n in first.items + second.items]
    assert references == [f"Your order order-{i} is confirmed" for i in (2, 1, 0)]
    assert first.next_cursor is not None and second.next_cursor is None


async def test_marking_read_is_for_the_owner_only(db: Database) -> None:
    await add_recipient(db)
    async with db.write() as session:
        await service.notify_order_confirmed(session, CONFIRMED)
    async with db.read() as session:
        notification_id = (await session.scalars(select(Notification.id))).one()
    async with db.write() as session:
        with pytest.raises(NotFound):
            await service.mark_read(session, "user-2", notification_id)
    async with db.write() as session:
        read = await service.mark_read(session, "user-1", notification_id)
        assert read.read_at is not None
