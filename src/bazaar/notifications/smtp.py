"""The mailer's SMTP connections, kept open between emails as a mail client keeps them.

An email on a connection of its own paid, around its three commands (MAIL, RCPT, DATA), the
TCP connect, the server's greeting, EHLO and QUIT, and with TLS a handshake and with
credentials a login. On loopback against `bazaar up`'s mail sink, without TLS, an email cost
the sender 2.2 ms of CPU on a connection of its own and 1.15 ms on a kept one, the sender and
the sink together 5.0 and 2.85 ms (docs/performance.md).

A connection carries one email at a time: emails sent at once each take an idle connection or
open one, and afterwards up to `KEPT` idle ones stay open, each for at most `IDLE_SECONDS`
(servers end idle sessions themselves after a while: RFC 5321 asks them to wait five minutes,
some wait less). A kept connection that the server closed meanwhile fails the email's first
command; the email is then sent once more on a new connection. Any other failure is the
caller's (the job queue retries it): delivery stays at least once, with a stable Message-ID.
"""

import time
from dataclasses import asdict, dataclass
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

import aiosmtplib

KEPT = 4
"""Idle connections kept open: the emails a worker sends at once, in the common case."""
IDLE_SECONDS = 30.0
"""How long an idle connection is kept before it is closed rather than used."""


@dataclass(frozen=True)
class SmtpServer:
    """Where and how to connect: `smtp://` (plain), `smtp+starttls://` or `smtps://`
    (implicit TLS), with `user:password@` when the server wants them. The fields are
    `aiosmtplib.SMTP`'s arguments of the same names."""

    hostname: str
    port: int
    username: str | None
    password: str | None
    use_tls: bool
    start_tls: bool

    @classmethod
    def from_url(cls, url: str) -> "SmtpServer":
        parts = urlsplit(url)
        implicit_tls = parts.scheme == "smtps"
        return cls(
            hostname=parts.hostname or "localhost",
            port=parts.port or (465 if implicit_tls else 25),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            use_tls=implicit_tls,
            start_tls=parts.scheme == "smtp+starttls",
        )


class SmtpConnections:
    """Sends emails to one server over connections kept open between them."""

    def __init__(
        self,
        server: SmtpServer,
        timeout: float,
        kept: int = KEPT,
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        self.server = server
        self.timeout = timeout
        self.kept = kept
        self.idle_seconds = idle_seconds
        self._idle: list[tuple[float, aiosmtplib.SMTP]] = []
        """Open connections no email is using, each with when it was last used, newest last."""
        self.opened = 0
        """Connections opened so far (the tests', and the reader's, measure of reuse)."""

    async def send(self, message: EmailMessage) -> None:
        """Send `message`; the server's refusal or an unreachable server raises."""
        kept = self._take_idle()
        if kept is not None:
            try:
                await self._send_on(kept, message)
                return
            except aiosmtplib.SMTPException as error:
                if not _ended_by_server(error):
                    raise
                # the server ended the session meanwhile: the email goes on a new one
        await self._send_on(await self._connect(), message)

    async def _send_on(self, client: aiosmtplib.SMTP, message: EmailMessage) -> None:
        """Send on `client`, kept afterwards; closed when the send fails."""
        try:
            await client.send_message(message)
        except BaseException:
            client.close()
            raise
        await self._give_back(client)

    async def aclose(self) -> None:
        """End the idle connections' sessions (QUIT)."""
        idle, self._idle = self._idle, []
        for _used, client in idle:
            await _quit(client)

    def _take_idle(self) -> aiosmtplib.SMTP | None:
        """The most recently used idle connection still worth using; older ones are closed."""
        while self._idle:
            used, client = self._idle.pop()
            if client.is_connected and time.monotonic() - used < self.idle_seconds:
                return client
            client.close()
        return None

    async def _give_back(self, client: aiosmtplib.SMTP) -> None:
        if len(self._idle) < self.kept:
            self._idle.append((time.monotonic(), client))
        else:
            await _quit(client)

    async def _connect(self) -> aiosmtplib.SMTP:
        """A new session: connected, greeted, upgraded to TLS and logged in as configured."""
        client = aiosmtplib.SMTP(**asdict(self.server), timeout=self.timeout)
        await client.connect()
        self.opened += 1
        return client


def _ended_by_server(error: aiosmtplib.SMTPException) -> bool:
    """The server closed the session, or said it is closing it (421), before it took the email."""
    if isinstance(error, aiosmtplib.SMTPServerDisconnected):
        return True
    return isinstance(error, aiosmtplib.SMTPResponseException) and error.code == 421


async def _quit(client: aiosmtplib.SMTP) -> None:
    try:
        await client.quit()
    except aiosmtplib.SMTPException:
        client.close()
