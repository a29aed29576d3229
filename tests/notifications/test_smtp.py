"""The mailer's SMTP connections against a real local SMTP server (aiosmtpd): kept open between
emails, one per email sent at once, and replaced when the server ended a kept one."""

import asyncio
from email.message import EmailMessage

import pytest
from aiosmtpd.smtp import Envelope as SmtpEnvelope
from aiosmtpd.smtp import Session

from bazaar.notifications.smtp import IDLE_SECONDS, KEPT, SmtpConnections, SmtpServer
from bazaar.runtime.cluster.topology import free_port
from tests.notifications.conftest import Sink, serving


def message(number: int) -> EmailMessage:
    email = EmailMessage()
    email["From"] = "shop@example.com"
    email["To"] = "ada@example.com"
    email["Subject"] = f"Email {number}"
    email.set_content(f"Body {number}")
    return email


def subjects(sink: Sink) -> list[str]:
    return [line for _f, _t, content in sink.received for line in content.decode().splitlines()
            if line.startswith("Subject: ")]  # fmt: skip


@pytest.fixture
def port() -> int:
    return free_port()


def connections(port: int, kept: int = KEPT, idle_seconds: float = IDLE_SECONDS) -> SmtpConnections:
    server = SmtpServer.from_url(f"smtp://127.0.0.1:{port}")
    return SmtpConnections(server, 5, kept=kept, idle_seconds=idle_seconds)


async def test_emails_one_after_another_share_one_connection(port: int) -> None:
    sink = Sink()
    smtp = connections(port)
    with serving(sink, port):
        for number in range(3):
            await smtp.send(message(number))
        await smtp.aclose()
    assert subjects(sink) == ["Subject: Email 0", "Subject: Email 1", "Subject: Email 2"]
    assert smtp.opened == 1 and len(set(sink.peers)) == 1


async def test_emails_sent_at_once_each_have_a_connection_and_at_most_kept_stay(
    port: int,
) -> None:
    sink = Sink()
    smtp = connections(port, kept=2)
    with serving(sink, port):
        await asyncio.gather(*(smtp.send(message(number)) for number in range(4)))
        assert smtp.opened == 4 and len(set(sink.peers)) == 4
        await asyncio.gather(*(smtp.send(message(number)) for number in range(4, 6)))
        assert smtp.opened == 4  # the two kept ones carried these
        await smtp.aclose()
    assert sorted(subjects(sink)) == [f"Subject: Email {n}" for n in range(6)]


async def test_a_kept_connection_the_server_ended_is_replaced_and_the_email_sent_once(
    port: int,
) -> None:
    before, after = Sink(), Sink()
    smtp = connections(port)
    with serving(before, port):
        await smtp.send(message(1))
    with serving(after, port):  # a restarted server: the kept session is gone
        await smtp.send(message(2))
        await smtp.aclose()
    assert (subjects(before), subjects(after)) == (["Subject: Email 1"], ["Subject: Email 2"])
    assert smtp.opened == 2


async def test_an_idle_connection_past_its_time_is_not_used(port: int) -> None:
    sink = Sink()
    smtp = connections(port, idle_seconds=0.05)
    with serving(sink, port):
        await smtp.send(message(1))
        await asyncio.sleep(0.1)
        await smtp.send(message(2))
        await smtp.aclose()
    assert smtp.opened == 2 and len(set(sink.peers)) == 2
    assert subjects(sink) == ["Subject: Email 1", "Subject: Email 2"]


async def test_a_refused_email_raises_and_its_connection_is_not_kept(port: int) -> None:
    smtp = connections(port)
    with serving(Sink(), port):
        bad = message(1)
        del bad["To"]  # no recipient: nothing to send it to
        with pytest.raises(ValueError):
            await smtp.send(bad)
        await smtp.send(message(2))
        await smtp.aclose()
    assert smtp.opened == 2


class ClosesAfterOne(Sink):
    """A server that takes one email per session, then answers 421 (closing), as a server
    past its idle timeout does."""

    async def handle_MAIL(
        self, _server: object, session: Session, envelope: SmtpEnvelope, address: str,
        options: list[str],
    ) -> str:  # fmt: skip
        if session.peer in self.peers:
            return "421 4.4.2 Idle too long, closing"
        envelope.mail_from, envelope.mail_options = address, options
        return "250 OK"


async def test_a_kept_connection_answered_421_sends_the_email_on_a_new_one(port: int) -> None:
    sink = ClosesAfterOne()
    smtp = connections(port)
    with serving(sink, port):
        await smtp.send(message(1))
        await smtp.send(message(2))
        await smtp.aclose()
    assert subjects(sink) == ["Subject: Email 1", "Subject: Email 2"]
    assert smtp.opened == 2 and len(set(sink.peers)) == 2
