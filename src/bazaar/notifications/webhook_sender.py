"""The webhook sender: a background loop that POSTs due deliveries to their webhooks.

Each request carries the delivery's stored JSON body and the headers `Content-Type:
application/json`, `Bazaar-Event-Id`, `Bazaar-Event-Type` and `Bazaar-Signature:
sha256=<hex HMAC-SHA256 of the exact body bytes, keyed with the webhook's secret>`. A 2xx
delivers it for good; anything else (another status, a timeout, a refused connection) is retried
with exponential backoff up to the configured attempts, then the delivery has failed. The answer
is recorded even across a database outage (retried while the delivery's lease lasts), so an
acknowledged delivery is sent again only if the sender dies before it could record it. Redirects
are not followed: a 3xx is a failed attempt like any other status.

Each connection is opened to an address checked just before (webhook_transport.py): a delivery
whose host now resolves to an address webhooks may not reach (DNS rebinding, or a record
changed since the webhook was registered) is not sent and fails for good, with the reason in
its `last_error`.
"""

import asyncio
import time

import httpx

from bazaar.notifications import webhooks
from bazaar.notifications.settings import NotificationsSettings
from bazaar.notifications.webhook_targets import TargetRefused
from bazaar.notifications.webhook_transport import CheckedTransport
from bazaar.notifications.webhooks import DELIVERY_QUEUED, SIGNATURE_HEADER, DueDelivery
from bazaar.platform.db import Database
from bazaar.platform.loops import Waker
from bazaar.platform.observability import log
from bazaar.platform.transient import outlast


class WebhookSender:
    """Sends due deliveries concurrently; woken after a commit that queued one, else polls."""

    batch_size = 20

    def __init__(self, db: Database, settings: NotificationsSettings) -> None:
        self.db = db
        self.settings = settings
        # Longer than any request may take, so no other sender retries one still in flight.
        self.lease = 3 * settings.webhook_timeout + 30
        self._waker = Waker(settings.webhook_poll_interval)
        db.listen(DELIVERY_QUEUED, self._waker.wake)

    async def run(self) -> None:
        async with self.client() as client:
            while True:
                try:
                    sent = await self.send_due(client)
                except Exception as error:  # the database is busy or gone: try again shortly
                    log.warning("webhook_sender_failed", error=str(error))
                    sent = 0
                if sent < self.batch_size:
                    await self._waker.wait()

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=CheckedTransport(
                allow_private=self.settings.webhook_allow_private,
                resolve_timeout=self.settings.webhook_timeout,
            ),
            timeout=self.settings.webhook_timeout,
            follow_redirects=False,
            headers={"User-Agent": "Bazaar-Webhooks/1"},
        )

    async def send_due(self, client: httpx.AsyncClient) -> int:
        """POST every due delivery once; returns how many were tried."""
        async with self.db.write() as session:
            due = await webhooks.claim_due_deliveries(session, self.batch_size, self.lease)
        # The lease keeps them ours until then: an answer may be recorded until this deadline.
        ours_until = time.monotonic() + self.lease - 2 * self.settings.webhook_timeout
        sends = (self._send_one(client, delivery, ours_until) for delivery in due)
        await asyncio.gather(*sends)
        return len(due)

    async def _send_one(
        self, client: httpx.AsyncClient, delivery: DueDelivery, ours_until: float
    ) -> None:
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: webhooks.sign(delivery.secret, delivery.payload),
            "Bazaar-Event-Id": delivery.event_id,
            "Bazaar-Event-Type": delivery.event_type,
        }
        status_code: int | None = None
        error: str | None = None
        try:
            response = await client.post(delivery.url, content=delivery.payload, headers=headers)
            status_code = response.status_code
            if not response.is_success:
                error = f"HTTP {status_code}"
        except TargetRefused as refused:
            await self._refuse(delivery, str(refused))
            return
        except Exception as failure:  # refused, timed out, unresolvable...: a failed attempt
            error = f"{type(failure).__name__}: {failure}"

        async def record() -> str:
            async with self.db.write() as session:
                return await webhooks.record_attempt(
                    session, delivery.id, self.settings, status_code=status_code, error=error
                )

        # A database that is briefly down is outlasted: a delivery the receiver acknowledged
        # left pending would be sent again once the lease lapsed.
        status = await outlast(record, ours_until)
        if error:
            log.warning(
                "webhook_not_delivered", delivery_id=delivery.id, status=status, error=error
            )

    async def _refuse(self, delivery: DueDelivery, reason: str) -> None:
        async with self.db.write() as session:
            await webhooks.refuse_delivery(session, delivery.id, reason)
        log.warning(
            "webhook_refused",
            delivery_id=delivery.id,
            reason=reason,
            status="failed",
        )
