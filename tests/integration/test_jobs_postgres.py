"""The job queue on PostgreSQL, with the mailer as its handler: workers claim past each other's
locks and run each job once, and a worker killed in the middle of a send leaves its email to
another worker once the claim's lease ends (not before: the send may still be going on)."""

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from bazaar.notifications import service
from bazaar.notifications.mailer import Mailer
from bazaar.notifications.models import DeliveryStatus
from bazaar.notifications.settings import NotificationsSettings
from bazaar.notifications.wiring import SCHEMA
from bazaar.platform import migrations
from bazaar.platform.db import Database
from bazaar.platform.job_worker import JobWorker
from bazaar.platform.postgres import drop_database, ensure_database, postgres_database
from bazaar.platform.schema import job
from bazaar.platform.settings import Env
from tests.notifications.conftest import FAST, add_recipient
from tests.notifications.test_mailer import CONFIRMED, Sink, email_row, queue_email
from tests.postgres import fresh_database_url, require_server

LEASE = 3.0
DYING_WORKER = f"""
import asyncio, sys
from pathlib import Path
from bazaar.notifications import service
from bazaar.notifications.mailer import Mailer
from bazaar.notifications.settings import NotificationsSettings
from bazaar.platform.job_worker import JobWorker
from bazaar.platform.postgres import postgres_database
from bazaar.platform.settings import Env

db = postgres_database("notifications", sys.argv[1])
settings = NotificationsSettings.from_env(Env({{"BAZAAR_SMTP_TIMEOUT": "120"}}))
mailer = Mailer(db, settings, smtp_url=sys.argv[2], mail_dir=Path(sys.argv[3]))
mailer.lease = {LEASE}
asyncio.run(JobWorker(db, [mailer]).run_due())
"""


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    await require_server()
    url = make_url(fresh_database_url())
    await ensure_database(url)
    database = postgres_database("notifications", url.render_as_string(hide_password=False))
    await migrations.upgrade(database, SCHEMA)
    try:
        yield database
    finally:
        await database.dispose()
        await drop_database(url)


async def test_a_worker_killed_mid_send_leaves_its_email_to_another_after_the_lease(
    db: Database, tmp_path: Path, smtp_sink: tuple[Sink, int]
) -> None:
    connected = asyncio.Event()

    async def never_greet(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.set()  # the dying worker has claimed the email and is sending it
        await asyncio.sleep(60)
        writer.close()

    silent = await asyncio.start_server(never_greet, "127.0.0.1", 0)
    silent_port = silent.sockets[0].getsockname()[1]
    email_id = await queue_email(db)
    url = db.primary.url.render_as_string(hide_password=False)
    dying = await asyncio.create_subprocess_exec(
        *[
            sys.executable,
            "-c",
            DYING_WORKER,
            url,
            f"smtp://127.0.0.1:{silent_port}",
            str(tmp_path),
        ],
        env={**os.environ, "BAZAAR_LOG_LEVEL": "warning"},
    )
    sink, port = smtp_sink
    settings = NotificationsSettings.from_env(Env(FAST))
    mailer = Mailer(db, settings, smtp_url=f"smtp://127.0.0.1:{port}", mail_dir=tmp_path)
    worker = JobWorker(db, [mailer])
    try:
        async with asyncio.timeout(30):
            await connected.wait()
        claimed_at = time.monotonic()
        assert await worker.run_due() == 0  # claimed by the other worker: not due
        dying.send_signal(signal.SIGKILL)
        await asyncio.wait_for(dying.wait(), timeout=10)
        while await worker.run_due() == 0:
            assert time.monotonic() - claimed_at < LEASE + 5, "the lease never ended"
            await asyncio.sleep(0.1)
        assert time.monotonic() - claimed_at >= LEASE - 0.5  # not before the lease ended
    finally:
        if dying.returncode is None:
            dying.kill()
        silent.close()
    email = await email_row(db, email_id)
    assert email.status == DeliveryStatus.SENT
    assert len(sink.received) == 1


async def test_workers_at_once_run_each_job_once(
    db: Database, tmp_path: Path, smtp_sink: tuple[Sink, int]
) -> None:
    sink, port = smtp_sink
    await add_recipient(db, name="Ada Lovelace")
    async with db.write() as session:
        for number in range(30):
            confirmed = msgspec.structs.replace(CONFIRMED, order_id=f"order-{number}")
            await service.notify_order_confirmed(session, confirmed)
    settings = NotificationsSettings.from_env(Env(FAST))
    workers = [
        JobWorker(
            db,
            [Mailer(db, settings, smtp_url=f"smtp://127.0.0.1:{port}", mail_dir=tmp_path)],
            batch_size=4,
        )
        for _ in range(3)
    ]
    while sum(await asyncio.gather(*(worker.run_due() for worker in workers))):
        pass
    assert len(sink.received) == 30
    async with db.read() as session:
        assert await session.scalar(select(func.count()).select_from(job)) == 0
