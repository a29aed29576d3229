"""The mailer: a background loop that sends the pending outgoing emails.

With `BAZAAR_SMTP_URL` set it talks SMTP: `smtp://host:port` (plain), `smtp+starttls://` (STARTTLS)
or `smtps://` (implicit TLS), with `user:password@` credentials if the server wants them.
Without it, each email is written as an RFC 5322 `.eml` file under `<data_dir>/mail/`. An email
that fails is retried with backoff, then marked failed. Delivery is at least once: an email is
sent again, with the same Message-ID (which mail clients collapse), only if the process dies
between the server's acceptance and the commit that records it.
"""

import asyncio
import os
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiosmtplib

from bazaar.notifications import service
from bazaar.notifications.models import OutgoingEmail
from bazaar.notifications.service import EMAIL_QUEUED
from bazaar.notifications.settings import NotificationsSettings
from bazaar.platform.db import Database, WriteSession
from bazaar.platform.loops import Waker
from bazaar.platform.observability import log


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
    """Sends due emails, a few at once; woken after a commit that queued one, else polls.

    On PostgreSQL an email is locked (`FOR UPDATE SKIP LOCKED`) in a transaction that stays
    open while it is sent and records it sent as it commits: other mailers skip it meanwhile,
    a mailer that dies releases it at once (its connection closes) instead of after a lease,
    and an email is sent again only if the process dies between the server's acceptance and
    that commit. On SQLite (one process, and a transaction there would hold every writer) an
    email is claimed for a lease (`smtp_timeout` + 5 s) instead and recorded after the send.
    """

    batch_size = 48
    """Emails tried in one round, by `lanes` sends at once."""
    lanes = 4

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
        self.smtp_url = smtp_url
        self.mail_dir = mail_dir
        # Long enough for the slowest send to finish before another mailer may retry it.
        self.lease = settings.smtp_timeout + 5
        self._waker = Waker(settings.mailer_poll_interval)
        db.listen(EMAIL_QUEUED, self._waker.wake)

    async def run(self) -> None:
        while True:
            try:
                sent = await self.send_due()
            except Exception as error:  # the database is busy or gone: try again shortly
                log.warning("mailer_failed", error=str(error))
                sent = 0
            if sent < self.batch_size:
                await self._waker.wait()

    async def send_due(self) -> int:
        """Try due emails once each, up to `batch_size`; returns how many were tried."""
        per_lane = self.batch_size // self.lanes
        return sum(await asyncio.gather(*(self._lane(per_lane) for _ in range(self.lanes))))

    async def _lane(self, limit: int) -> int:
        tried = 0
        send_next = self._send_locked if self.db.dialect == "postgresql" else self._send_leased
        while tried < limit and await send_next():
            tried += 1
        return tried

    async def _send_locked(self) -> bool:
        async with self.db.write() as session:
            email = await service.lock_due_email(session)
            if email is None:
                return False
            error, permanent = await self._send(email)
            await self._record(session, email, error, permanent=permanent)
        return True

    async def _send_leased(self) -> bool:
        async with self.db.write() as session:
            email = await service.claim_due_email(session, self.lease)
        if email is None:
            return False
        error, permanent = await self._send(email)
        async with self.db.write() as session:
            await self._record(session, email, error, permanent=permanent)
        return True

    async def _send(self, email: OutgoingEmail) -> tuple[str | None, bool]:
        """Send `email`; returns None when the server took it, else why not and whether no
        retry can help."""
        try:
            message = compose(email, self.settings.email_from)
        except (ValueError, TypeError) as error:  # an address no retry can fix
            return f"cannot compose: {error}", True
        try:
            if self.smtp_url:
                await self._send_smtp(self.smtp_url, message)
            else:
                await asyncio.to_thread(self._write_file, email.id, message)
        except Exception as error:  # refused, unreachable, timed out...: a failed attempt
            return f"{type(error).__name__}: {error}", False
        return None, False

    async def _record(
        self, session: WriteSession, email: OutgoingEmail, error: str | None, *, permanent: bool
    ) -> None:
        if error is None:
            await service.mark_email_sent(session, email.id)
            return
        status = await service.record_email_failure(
            session, email.id, error, self.settings, permanent=permanent
        )
        log.warning("email_not_sent", email_id=email.id, status=status, error=error)

    async def _send_smtp(self, smtp_url: str, message: EmailMessage) -> None:
        url = urlsplit(smtp_url)
        implicit_tls = url.scheme == "smtps"
        await aiosmtplib.send(
            message,
            hostname=url.hostname or "localhost",
            port=url.port or (465 if implicit_tls else 25),
            username=unquote(url.username) if url.username else None,
            password=unquote(url.password) if url.password else None,
            use_tls=implicit_tls,
            start_tls=url.scheme == "smtp+starttls",
            timeout=self.settings.smtp_timeout,
        )

    def _write_file(self, email_id: str, message: EmailMessage) -> None:
        self.mail_dir.mkdir(parents=True, exist_ok=True)
        final = self.mail_dir / f"{email_id}.eml"
        partial = final.with_suffix(".eml.tmp")
        partial.write_bytes(message.as_bytes())
        # A reader of the folder never sees half an email.
        os.replace(partial, final)
