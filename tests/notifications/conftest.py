"""Fixtures of the notifications tests: a migrated notifications database on SQLite, a
webhook receiver on a loopback port, and a real SMTP server (aiosmtpd) to send emails to."""

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope as SmtpEnvelope
from aiosmtpd.smtp import Session
from sqlalchemy import select

from bazaar.identity.events import UserRegistered
from bazaar.notifications import handlers, service
from bazaar.notifications.models import WebhookDelivery
from bazaar.notifications.settings import NotificationsSettings
from bazaar.notifications.wiring import SCHEMA
from bazaar.orders.events import OrderConfirmed
from bazaar.platform.bus import RetryPolicy, deliver
from bazaar.platform.db import Database
from bazaar.platform.events import Envelope, Event
from bazaar.platform.money import Money
from bazaar.platform.settings import Env
from tests.plugin import migrated

FAST = {
    "BAZAAR_MAILER_POLL_INTERVAL": "0.01",
    "BAZAAR_EMAIL_FIRST_DELAY": "0.01",
    "BAZAAR_WEBHOOK_FIRST_DELAY": "0.01",
    "BAZAAR_WEBHOOK_POLL_INTERVAL": "0.01",
    "BAZAAR_WEBHOOK_ATTEMPTS": "3",
    "BAZAAR_WEBHOOK_TIMEOUT": "2",
    "BAZAAR_SMTP_TIMEOUT": "2",
    # The tests' webhook receivers listen on loopback; test_webhook_targets.py checks the
    # refusals with this turned off.
    "BAZAAR_WEBHOOK_ALLOW_PRIVATE": "true",
}

CONFIRMED = OrderConfirmed(
    order_id="order-1", customer_id="user-1", total=Money(2500, "USD"), payment_id="pay-1"
)


@pytest.fixture
def settings() -> NotificationsSettings:
    return NotificationsSettings.from_env(Env(FAST))


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    async with migrated("notifications", tmp_path, SCHEMA) as database:
        yield database


async def add_recipient(
    db: Database, user_id: str = "user-1", email: str = "ada@example.com", name: str = "Ada"
) -> None:
    async with db.write() as session:
        await service.record_recipient(
            session, UserRegistered(user_id=user_id, email=email, name=name, role="customer")
        )


@dataclass
class Receiver:
    """A tiny HTTP/1.1 server: answers each request with the next status of `statuses`."""

    statuses: list[int]
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")[1:]
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines if line)
        }
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append((headers, body))
        status = self.statuses.pop(0) if self.statuses else 200
        location = "Location: /elsewhere\r\n" if 300 <= status < 400 else ""
        writer.write(
            f"HTTP/1.1 {status} X\r\n{location}Content-Length: 2\r\nConnection: close\r\n\r\n"
            "ok".encode()
        )
        await writer.drain()
        writer.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver(statuses=[500])
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
    receiver.port = server.sockets[0].getsockname()[1]
    async with server:
        yield receiver


async def publish(db: Database, event: Event, envelope: Envelope | None = None) -> Envelope:
    """Hand an event to notifications' webhook consumer, as the bus would."""
    envelope = envelope or Envelope.wrap(event)
    subscription = next(
        s
        for s in handlers.subscriptions(db)
        if s.consumer == handlers.WEBHOOK_CONSUMER and s.event_type == envelope.type
    )
    assert await deliver(subscription, envelope, RetryPolicy(attempts=1)) is True
    return envelope


async def deliveries(db: Database) -> list[WebhookDelivery]:
    async with db.read() as session:
        return list(await session.scalars(select(WebhookDelivery)))


class Sink:
    """An aiosmtpd handler that keeps every message it receives, and the client's address
    (host, port) of each: one port per connection."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []
        self.peers: list[object] = []

    async def handle_DATA(self, _server: object, session: Session, envelope: SmtpEnvelope) -> str:
        self.received.append((envelope.mail_from, envelope.rcpt_tos, envelope.content))
        self.peers.append(session.peer)
        return "250 Message accepted for delivery"


@contextmanager
def serving(sink: Sink, port: int) -> Iterator[None]:
    """An SMTP server on `port` handing what it receives to `sink`, until the block ends."""
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield
    finally:
        controller.stop()
