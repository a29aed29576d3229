"""The webhook sender: a background loop that POSTs due deliveries to their webhooks.

Each request carries the delivery's stored JSON body and the headers `Content-Type:
application/json`, `Bazaar-Event-Id`, `Bazaar-Event-Type` and `Bazaar-Signature:
sha256=<hex HMAC-SHA256 of the exact body bytes, keyed with the webhook's secret>`. A 2xx
delivers it for good; anything else (another status, a timeout, a refused connection) is retried
with exponential backoff up to the configured attempts, then the delivery has failed (each
delivery is a job of the platform's queue, platform/jobs.py). The answer is recorded even
across a database outage (retried while the job's lease lasts), so an acknowledged delivery is
sent again only if the sender dies before it could record it. Redirects
are not followed: a 3xx is a failed attempt like any other status.

Each connection is opened to an address checked just before (webhook_transport.py): a delivery
whose host now resolves to an address webhooks may not reach (DNS rebinding, or a record
changed since the webhook was registered) is not sent and fails for good, with the reason in
its `last_error`.
"""

import httpx

from bazaar.notifications import webhooks
from bazaar.notifications.settings import NotificationsSettings
from bazaar.notifications.webhook_targets import TargetRefused
from bazaar.notifications.webhook_transport import CheckedTransport
from bazaar.notifications.webhooks import SIGNATURE_HEADER, WEBHOOK_JOB
from bazaar.platform import jobs
from bazaar.platform.db import Database, WriteSession
from bazaar.platform.jobs import Failed, GiveUp, Job
from bazaar.platform.transient import outlast


class NotAcknowledged(Failed):
    """The receiver answered with something other than a 2xx."""

    def __init__(self, status_code: int) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code


class WebhookSender:
    """The handler of `webhook` jobs: POSTs one delivery and records the receiver's answer
    with the job's end. Retries, their backoff and the last attempt are the job queue's."""

    kind = WEBHOOK_JOB

    def __init__(self, db: Database, settings: NotificationsSettings) -> None:
        self.db = db
        self.settings = settings
        # Longer than any request may take, so no other worker retries one still in flight,
        # with room to record the answer across a brief database outage.
        self.lease = 3 * settings.webhook_timeout + 30
        self.backoff = settings.webhook_backoff
        self._client: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=CheckedTransport(
                    allow_private=self.settings.webhook_allow_private,
                    resolve_timeout=self.settings.webhook_timeout,
                ),
                timeout=self.settings.webhook_timeout,
                follow_redirects=False,
                headers={"User-Agent": "Bazaar-Webhooks/1"},
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def run(self, job: Job) -> None:
        delivery_id = job.payload["delivery_id"]
        async with self.db.read(fresh=True) as session:
            delivery = await webhooks.due_delivery(session, delivery_id)
        status_code = None
        if delivery is not None:
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: webhooks.sign(delivery.secret, delivery.payload),
                "Bazaar-Event-Id": delivery.event_id,
                "Bazaar-Event-Type": delivery.event_type,
            }
            try:
                response = await self.client().post(
                    delivery.url, content=delivery.payload, headers=headers
                )
            except TargetRefused as refused:
                raise GiveUp(f"refused: {refused}") from refused
            except Exception as error:  # refused, timed out, unresolvable...: a failed attempt
                raise Failed(f"{type(error).__name__}: {error}") from error
            status_code = response.status_code
            if not response.is_success:
                raise NotAcknowledged(status_code)

        async def record() -> None:
            async with self.db.write() as session:
                if status_code is not None:
                    await webhooks.record_delivered(session, delivery_id, status_code)
                await jobs.finish(session, job)

        # A delivery the receiver acknowledged, left pending, would be sent again once the
        # lease lapsed: a database that is briefly down is outlasted.
        await outlast(record, job.deadline)

    async def failed(
        self, session: WriteSession, job: Job, error: BaseException, *, final: bool
    ) -> None:
        refused = isinstance(error, GiveUp)
        await webhooks.record_failure(
            session,
            job.payload["delivery_id"],
            status_code=error.status_code if isinstance(error, NotAcknowledged) else None,
            error=jobs.reason(error),
            final=final,
            counted=not refused,  # nothing was sent
        )
