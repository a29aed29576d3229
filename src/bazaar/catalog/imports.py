"""CSV product imports: a job recorded with its file, then worked in batches in the background.

A batch is one transaction that applies its rows and advances the job's `processed_rows`
only if no other worker advanced it meanwhile (an optimistic fence), so a job taken over
after its worker died resumes where the last committed batch ended and no row is applied
twice. Rows with a live product's sku update it; bad rows, unreadable ones included, are
reported and skipped. A job whose processing crashes is taken again after its lease, and ends
`failed` after `MAX_ATTEMPTS` crashes; a dependency's outage waits without counting.
"""

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import msgspec
from sqlalchemy import insert, or_, select, update

from bazaar.catalog.csv_records import Record, read_records
from bazaar.catalog.events import ProductUpdated
from bazaar.catalog.models import ImportFile, ImportJob, Product
from bazaar.catalog.pages import ProductPages
from bazaar.catalog.schemas import Amount, CategoryName, Description, JobRead, Name, Sku, Stock
from bazaar.catalog.service import use_categories
from bazaar.catalog.settings import CatalogSettings
from bazaar.platform import outbox
from bazaar.platform.clock import utcnow
from bazaar.platform.db import Database, ReadSession, WriteSession
from bazaar.platform.errors import NotFound
from bazaar.platform.ids import new_id
from bazaar.platform.loops import Waker
from bazaar.platform.money import Currency
from bazaar.platform.observability import log
from bazaar.platform.transient import is_transient

PRODUCT_IMPORT = "product_import"
QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"
COLUMNS = ["sku", "name", "description", "category", "price_amount", "currency", "stock"]
MAX_ATTEMPTS = 3
"""Crashes (not outages) after which a job ends `failed`; each retry waits out the lease."""


class ImportRow(msgspec.Struct):
    sku: Sku
    name: Name
    description: Description
    category: CategoryName
    price_amount: Amount
    currency: Currency
    stock: Stock


class JobLost(Exception):
    """Another worker advanced the job: this one stops working it."""


async def submit_import(session: WriteSession, content: bytes, created_by: str) -> ImportJob:
    """Record a queued import job and its file; a worker picks it up after the commit."""
    now = utcnow()
    job = ImportJob(
        id=new_id(),
        kind=PRODUCT_IMPORT,
        status=QUEUED,
        processed_rows=0,
        created_count=0,
        updated_count=0,
        failed_count=0,
        errors=[],
        attempts=0,
        created_by=created_by,
        created_at=now,
        updated_at=now,
    )
    session.add(job)
    await session.flush()
    session.add(ImportFile(job_id=job.id, content=content))
    return job


async def get_job(session: ReadSession, job_id: str) -> ImportJob:
    job = await session.get(ImportJob, job_id)
    if job is None:
        raise NotFound("No such job")
    return job


def job_read(job: ImportJob) -> JobRead:
    if job.status == SUCCEEDED:
        progress = 1.0
    elif job.total_rows:
        progress = min(1.0, job.processed_rows / job.total_rows)
    else:
        progress = 0.0
    result = None
    if job.total_rows is not None:
        result = {
            "processed": job.processed_rows,
            "total": job.total_rows,
            "created": job.created_count,
            "updated": job.updated_count,
            "failed": job.failed_count,
            "errors": job.errors,
        }
    return JobRead(job.id, job.kind, job.status, progress, result, job.error)


async def claim_job(session: WriteSession, lease_seconds: float) -> ImportJob | None:
    """Take the oldest queued job, or a running one whose worker stopped reporting."""
    now = utcnow()
    claimable = or_(
        ImportJob.status == QUEUED,
        (ImportJob.status == RUNNING)
        & (ImportJob.heartbeat_at < now - timedelta(seconds=lease_seconds)),
    )
    job_id = await session.scalar(
        select(ImportJob.id).where(claimable).order_by(ImportJob.created_at).limit(1)
    )
    if job_id is None:
        return None
    claimed = await session.execute(
        update(ImportJob)
        .where(ImportJob.id == job_id, claimable)
        .values(status=RUNNING, heartbeat_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return await session.get(ImportJob, job_id) if claimed.rowcount == 1 else None


@dataclass
class BatchOutcome:
    created: int = 0
    updated: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)


def header_problem(text: str) -> str | None:
    header = next(read_records(text), None)
    if header is None or [column.strip().lower() for column in header.fields] != COLUMNS:
        return f"The first line must be the header {','.join(COLUMNS)}"
    return None


def parse_record(record: list[str]) -> ImportRow:
    if len(record) != len(COLUMNS):
        raise ValueError(f"Expected {len(COLUMNS)} fields, got {len(record)}")
    values = dict(zip(COLUMNS, (value.strip() for value in record), strict=True))
    try:
        return msgspec.convert(values, ImportRow, strict=False)
    except msgspec.ValidationError as error:
        raise ValueError(str(error).replace("$.", "")) from None


async def apply_batch(session: WriteSession, records: list[Record]) -> BatchOutcome:
    """Create or update the products of a batch of records; bad ones become errors."""
    outcome = BatchOutcome()
    rows: dict[str, ImportRow] = {}
    for record in records:
        if record.problem is not None:
            outcome.errors.append({"line": record.line, "message": record.problem})
            continue
        if not any(value.strip() for value in record.fields):
            continue  # a blank line
        try:
            row = parse_record(record.fields)
        except ValueError as error:
            outcome.errors.append({"line": record.line, "message": str(error)})
            continue
        if row.sku in rows:
            outcome.updated += 1  # a later line of the same sku wins
        rows[row.sku] = row
    if not rows:
        return outcome
    existing = dict(
        (
            await session.execute(
                select(Product.sku, Product.id).where(
                    Product.sku.in_(list(rows)), Product.deleted_at.is_(None)
                )
            )
        ).all()
    )
    now = utcnow()
    fresh, changes = [], []
    for sku, row in rows.items():
        values = {
            "name": row.name,
            "description": row.description,
            "category": row.category,
            "price_amount": row.price_amount,
            "currency": row.currency,
            "stock": row.stock,
            "updated_at": now,
        }
        if sku in existing:
            changes.append({"id": existing[sku], **values})
        else:
            fresh.append({"id": new_id(), "sku": sku, "created_at": now, **values})
    await use_categories(session, {row.category for row in rows.values()})
    if fresh:
        await session.execute(insert(Product), fresh)
    if changes:
        await session.execute(update(Product), changes)
    for values in [*fresh, *changes]:
        outbox.add(session, ProductUpdated(product_id=values["id"]))
    outcome.created += len(fresh)
    outcome.updated += len(changes)
    outcome.changed = [values["id"] for values in changes]
    return outcome


class ImportWorker:
    """Works import jobs one at a time: woken after a job is submitted, else polling."""

    def __init__(self, db: Database, pages: ProductPages, settings: CatalogSettings) -> None:
        self.db = db
        self.pages = pages
        self.settings = settings
        self._waker = Waker(settings.import_poll_interval)

    def wake(self) -> None:
        self._waker.wake()

    async def run(self) -> None:
        while True:
            try:
                worked = await self.work_next()
            except Exception as error:  # claiming, or counting a crash, failed: retried next round
                if is_transient(error):  # the database is down: no traceback to read
                    log.warning("import_worker_waiting", error=type(error).__name__)
                else:
                    log.exception("import_worker_failed", error=str(error))
                worked = False
            if not worked:
                await self._waker.wait()

    async def work_next(self) -> bool:
        """Claim a job and work it; False when there was none to claim.

        A job whose processing crashes stays `running`, so that this or another worker takes it
        again once its lease runs out; the crash counts as one of its `MAX_ATTEMPTS`. A
        transient failure (the database down) does not count: the job waits for as long as
        the outage lasts.
        """
        async with self.db.write() as session:
            job = await claim_job(session, self.settings.import_lease_seconds)
        if job is None:
            return False
        try:
            await self.work(job)
        except JobLost:
            log.warning("import_job_lost", job_id=job.id)
        except Exception as error:
            if is_transient(error):
                log.warning("import_job_waiting", job_id=job.id, error=type(error).__name__)
            else:
                log.exception("import_job_crashed", job_id=job.id, error=str(error))
                await self._count_crash(job, error)
        return True

    async def work(self, job: ImportJob) -> None:
        async with self.db.read() as session:
            content = await session.scalar(
                select(ImportFile.content).where(ImportFile.job_id == job.id)
            )
        try:
            text = await asyncio.to_thread(bytes.decode, content or b"", "utf-8-sig")
        except UnicodeDecodeError:
            await self._finish(job, FAILED, "The file is not UTF-8 text")
            return
        problem = header_problem(text)
        if problem is not None:
            await self._finish(job, FAILED, problem)
            return
        total = await asyncio.to_thread(lambda: sum(1 for _ in read_records(text)) - 1)
        records = read_records(text)
        for _ in range(1 + job.processed_rows):  # the header, then the rows already applied
            next(records, None)
        processed = job.processed_rows
        batch: list[Record] = []
        for record in records:
            batch.append(record)
            if len(batch) == self.settings.import_batch_size:
                processed = await self._apply(job.id, batch, processed, total)
                batch = []
        if batch or total == 0:
            processed = await self._apply(job.id, batch, processed, total)
        await self._finish(job, SUCCEEDED, None)
        log.info("import_job_succeeded", job_id=job.id, rows=processed)

    async def _apply(self, job_id: str, batch: list[Record], processed: int, total: int) -> int:
        now = utcnow()
        done = processed + len(batch)
        async with self.db.write() as session:
            fenced = await session.execute(
                update(ImportJob)
                .where(
                    ImportJob.id == job_id,
                    ImportJob.status == RUNNING,
                    ImportJob.processed_rows == processed,
                )
                .values(processed_rows=done, total_rows=total, heartbeat_at=now, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            if fenced.rowcount != 1:
                raise JobLost(job_id)
            outcome = await apply_batch(session, batch)
            job = await session.get_one(ImportJob, job_id, populate_existing=True)
            job.created_count += outcome.created
            job.updated_count += outcome.updated
            job.failed_count += len(outcome.errors)
            room = self.settings.import_max_errors - len(job.errors)
            if outcome.errors and room > 0:
                job.errors = [*job.errors, *outcome.errors[:room]]
        await self.pages.drop(outcome.changed)
        return done

    async def _finish(self, job: ImportJob, status: str, error: str | None) -> None:
        now = utcnow()
        async with self.db.write() as session:
            finished = await session.execute(
                update(ImportJob)
                .where(ImportJob.id == job.id, ImportJob.status == RUNNING)
                .values(status=status, error=error, finished_at=now, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            if finished.rowcount != 1:
                raise JobLost(job.id)

    async def _count_crash(self, job: ImportJob, error: Exception) -> None:
        """Count a crash; the last allowed one fails the job, an earlier one renews its lease
        so that the retry comes a lease later."""
        now = utcnow()
        async with self.db.write() as session:
            attempts = await session.scalar(
                select(ImportJob.attempts).where(
                    ImportJob.id == job.id, ImportJob.status == RUNNING
                )
            )
            if attempts is None:
                return  # another worker finished the job meanwhile
            values: dict[str, Any] = {
                "attempts": attempts + 1,
                "heartbeat_at": now,
                "updated_at": now,
            }
            if attempts + 1 >= MAX_ATTEMPTS:
                message = (
                    f"The import crashed {attempts + 1} times ({type(error).__name__}) and was "
                    "stopped; rows in batches applied before the crash stay imported"
                )
                values |= {"status": FAILED, "error": message, "finished_at": now}
            counted = await session.execute(
                update(ImportJob)
                .where(
                    ImportJob.id == job.id,
                    ImportJob.status == RUNNING,
                    ImportJob.attempts == attempts,
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )
        if counted.rowcount == 1 and values.get("status") == FAILED:
            log.error("import_job_failed", job_id=job.id, attempts=values["attempts"])
