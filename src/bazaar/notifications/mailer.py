"""The mailer: a background loop that sends the pending outgoing emails.

With `BAZAAR_SMTP_URL` set it talks SMTP: `smtp://host:port` (plain), `smtp+starttls://` (STARTTLS)
or `smtps://` (implicit TLS), with `user:password@` credentials if the server wants them.
Without it, each email is written as an RFC 5322 `.eml` file under `<data_dir>/mail/`. An email
that fails is retried with backoff, then marked failed. Delivery is at least once: an email is
sent again, with the same Message-ID (which mail clients collapse), only if the process dies
between the server's acceptance and the commit that records it, or the server ends a kept
connection between taking it and saying so (smtp.py keeps the connections between emails).
Each email is a job of the platform's queue (platform/jobs.py), enqueued with the email in the
transaction that decided it.
"""

import asyncio
import os
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, bindparam, select

from bazaar.notifications import service
from bazaar.notifications.models import DeliveryStatus, OutgoingEmail
from bazaar.notifications.service import EMAIL_JOB
from bazaar.notifications.settings import NotificationsSettings
from bazaar.notifications.smtp import SmtpConnections, SmtpServer
from bazaar.platform import jobs
from bazaar.platform.db import Database, WriteSession
from bazaar.platform.jobs import Failed, GiveUp, Job
from bazaar.platform.queries import Query
from bazaar.platform.transient import outlast


def compose(email: OutgoingEmail, sender: str) -> EmailMessage:
    """The RFC 5322 message of an email; its Message-ID is stable across retries."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "bazaar.localhost"
    message = EmailMessage()
    message["From"] = sender
    message["To"] = Address(display_name=email.to_name, addr_spec=email.to_address)
    message["Subject"] = email.subject
    message["Date"] = format_datetime(email.created_at)
    message["Message-ID"] = f"<{email.id}@{domain}>"
    message.set_content(email.body)
    return message


class Mailer:
    """The handler of `email` jobs: sends one outgoing email, and records it sent with the
    job's end. Retries, their backoff and the last attempt are the job queue's
    (platform/jobs.py), with the attempts and first delay of `NotificationsSettings`."""

    kind = EMAIL_JOB

    def __init__(
        self,
        db: Database,
        settings: NotificationsSettings,
        *,
        smtp_url: str | None,
        mail_dir: Path,
    ) -> None:
        self.db = db
        self.settings = settings
        self.smtp = (
            None
            if not smtp_url
            else SmtpConnections(SmtpServer.from_url(smtp_url), settings.smtp_timeout)
        )
        """The server's connections, kept between emails (smtp.py); None: files instead."""
        self.mail_dir = mail_dir
        # Long enough for the slowest send to end before another worker may try it again.
        self.lease = settings.smtp_timeout + 5
        self.backoff = settings.email_backoff

    async def run(self, job: Job) -> None:
        email_id = job.payload["email_id"]
        found = await self.db.rows(_EMAIL, {"email_id": email_id}, fresh=True)
        email = _email(found[0]) if found else None
        if email is not None and email.status == DeliveryStatus.PENDING:
            try:
                message = compose(email, self.settings.email_from)
            except (ValueError, TypeError) as error:  # an address no retry can fix
                raise GiveUp(f"cannot compose: {error}") from error
            try:
                if self.smtp is not None:
                    await self.smtp.send(message)
                else:
                    await asyncio.to_thread(self._write_file, email.id, message)
            except Exception as error:  # refused, unreachable, timed out...: a failed attempt
                raise Failed(f"{type(error).__name__}: {error}") from error

        async def record() -> None:
            async with self.db.write() as session:
                await service.mark_email_sent(session, email_id)
                await jobs.finish(session, job)

        # Outlast a brief database outage: an email the server took, left pending, would be
        # sent again once the lease lapsed.
        await outlast(record, job.deadline)

    async def aclose(self) -> None:
        if self.smtp is not None:
            await self.smtp.aclose()

    async def failed(
        self, session: WriteSession, job: Job, error: BaseException, *, final: bool
    ) -> None:
        why = jobs.reason(error)
        await service.record_email_failure(session, job.payload["email_id"], why, final=final)

    def _write_file(self, email_id: str, message: EmailMessage) -> None:
        self.mail_dir.mkdir(parents=True, exist_ok=True)
        final = self.mail_dir / f"{email_id}.eml"
        partial = final.with_suffix(".eml.tmp")
        partial.write_bytes(message.as_bytes())
        # A reader of the folder never sees half an email.
        os.replace(partial, final)


_EMAIL_TABLE = cast(Table, OutgoingEmail.__table__)
_EMAIL = Query(select(_EMAIL_TABLE).where(_EMAIL_TABLE.c.id == bindparam("email_id")))


def _email(row: tuple[Any, ...]) -> OutgoingEmail:
    """The email of a row of `_EMAIL`, as the ORM would have loaded it (not in a session)."""
    return OutgoingEmail(**dict(zip(_EMAIL_TABLE.columns.keys(), row, strict=True)))
