"""The mailer: .eml files without an SMTP server, a real local SMTP sink with one, retries."""

import asyncio
import contextlib
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select

from bazaar.notifications import service
from bazaar.notifications.mailer import Mailer
from bazaar.notifications.models import DeliveryStatus, OutgoingEmail
from bazaar.notifications.settings import NotificationsSettings
from bazaar.orders.events import OrderConfirmed
from bazaar.platform.db import Database
from bazaar.platform.job_worker import JobWorker
from bazaar.platform.money import Money
from bazaar.platform.settings import Env
from bazaar.runtime.cluster.topology import free_port
from tests.notifications.conftest import FAST, Sink, add_recipient, serving

CONFIRMED = OrderConfirmed(
    order_id="order-1", customer_id="user-1", total=Money(2500, "USD"), payment_id="pay-1"
)


@pytest.fixture
def smtp_sink() -> Iterator[tuple[Sink, int]]:
    sink, port = Sink(), free_port()
    with serving(sink, port):
        yield sink, port


async def queue_email(db: Database) -> str:
    await add_recipient(db, name="Ada Lovelace")
    async with db.write() as session:
        await service.notify_order_confirmed(session, CONFIRMED)
    async with db.read() as session:
        return (await session.scalars(select(OutgoingEmail.id))).one()


async def email_row(db: Database, email_id: str) -> OutgoingEmail:
    async with db.read() as session:
        return await session.get_one(OutgoingEmail, email_id)


async def test_without_smtp_each_email_becomes_an_eml_file_once(
    db: Database, settings: NotificationsSettings, tmp_path: Path
) -> None:
    mailer = Mailer(db, settings, smtp_url=None, mail_dir=tmp_path / "mail")
    email_id = await queue_email(db)
    assert await JobWorker(db, [mailer]).run_due() == 1
    assert await JobWorker(db, [mailer]).run_due() == 0
    files = list((tmp_path / "mail").iterdir())
    assert [file.name for file in files] == [f"{email_id}.eml"]
    message = message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    assert message["To"] == "Ada Lovelace <ada@example.com>"
    assert message["From"] == "Bazaar <no-reply@bazaar.localhost>"
    assert message["Message-ID"] == f"<{email_id}@bazaar.localhost>"
    assert "order-1" in message["Subject"] and "25.00 USD" in message.get_content()
    assert (await email_row(db, email_id)).status == DeliveryStatus.SENT


async def test_with_an_smtp_url_the_sink_receives_the_email(
    db: Database, tmp_path: Path, smtp_sink: tuple[Sink, int]
) -> None:
    sink, port = smtp_sink
    env = Env({**FAST, "BAZAAR_EMAIL_FROM": "shop@example.com"})
    settings = NotificationsSettings.from_env(env)
    mailer = Mailer(db, settings, smtp_url=f"smtp://127.0.0.1:{port}", mail_dir=tmp_path / "mail")
    email_id = await queue_email(db)
    assert await JobWorker(db, [mailer]).run_due() == 1
    assert len(sink.received) == 1
    mail_from, rcpt_tos, content = sink.received[0]
    assert (mail_from, rcpt_tos) == ("shop@example.com", ["ada@example.com"])
    message = message_from_bytes(content, policy=policy.default)
    assert message["Subject"] == "Your order order-1 is confirmed"
    assert (await email_row(db, email_id)).status == DeliveryStatus.SENT
    assert not (tmp_path / "mail").exists()


async def test_the_running_mailer_is_woken_by_the_commit(
    db: Database, settings: NotificationsSettings, tmp_path: Path, smtp_sink: tuple[Sink, int]
) -> None:
    sink, port = smtp_sink
    slow = NotificationsSettings.from_env(Env({**FAST, "BAZAAR_MAILER_POLL_INTERVAL": "30"}))
    mailer = Mailer(db, slow, smtp_url=f"smtp://127.0.0.1:{port}", mail_dir=tmp_path)
    task = asyncio.create_task(JobWorker(db, [mailer], poll_interval=30).run())
    try:
        await asyncio.sleep(0.05)  # the loop is now waiting out its 30-second poll
        email_id = await queue_email(db)
        for _ in range(100):
            if (await email_row(db, email_id)).status == DeliveryStatus.SENT:
                break
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert (await email_row(db, email_id)).status == DeliveryStatus.SENT
    assert len(sink.received) == 1


async def test_an_unreachable_smtp_server_is_retried_with_backoff_then_given_up(
    db: Database, tmp_path: Path
) -> None:
    # a backoff long enough that a busy machine still calls twice within it
    backoff = {"BAZAAR_EMAIL_ATTEMPTS": "2", "BAZAAR_EMAIL_FIRST_DELAY": "1"}
    settings = NotificationsSettings.from_env(Env({**FAST, **backoff}))
    mailer = Mailer(db, settings, smtp_url=f"smtp://127.0.0.1:{free_port()}", mail_dir=tmp_path)
    email_id = await queue_email(db)
    assert await JobWorker(db, [mailer]).run_due() == 1
    first = await email_row(db, email_id)
    assert (first.status, first.attempts) == (DeliveryStatus.PENDING, 1) and first.last_error
    assert await JobWorker(db, [mailer]).run_due() == 0  # not due before its backoff
    await asyncio.sleep(1.15)  # the backoff's 1 s, and its jitter
    assert await JobWorker(db, [mailer]).run_due() == 1
    assert (await email_row(db, email_id)).status == DeliveryStatus.FAILED
