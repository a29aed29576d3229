"""CSV product imports: an import recorded with its file and a job of the platform's queue,
then worked in batches in the background.

A batch is one transaction that applies its rows, advances the import's `processed_rows` and
renews the job's claim only if no other worker took the job meanwhile (the claim is the
fence), so an import taken over after its worker died resumes where the last committed batch
ended and no row is applied twice. Rows with a live product's sku update it; bad rows,
unreadable ones included, are reported and skipped. An import whose processing crashes is
tried again after a backoff, and ends `failed` after `MAX_ATTEMPTS` crashes; a dependency's
outage waits without counting (platform/jobs.py).
"""

import asyncio
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import msgspec
from sqlalchemy import insert, select, update

from bazaar.catalog.csv_records import Record, read_records
from bazaar.catalog.events import ProductUpdated
from bazaar.catalog.models import ImportFile, ImportJob, Product
from bazaar.catalog.pages import ProductPages
from bazaar.catalog.schemas import Amount, CategoryName, Description, Name, Sku, Stock
from bazaar.catalog.service import use_categories
from bazaar.catalog.settings import CatalogSettings
from bazaar.platform import jobs, outbox
from bazaar.platform.clock import utcnow
from bazaar.platform.db import Database, ReadSession, WriteSession
from bazaar.platform.errors import NotFound
from bazaar.platform.ids import new_id
from bazaar.platform.jobs import Backoff, Job, JobLost
from bazaar.platform.money import Currency
from bazaar.platform.observability import log
from bazaar.platform.statements import rows_matched

PRODUCT_IMPORT = "product_import"
"""The kind of an import, and of the job that works it."""
COLUMNS = ["sku", "name", "description", "category", "price_amount", "currency", "stock"]
MAX_ATTEMPTS = 3
"""Crashes (not outages) after which an import ends `failed`."""
RETRY_DELAY = 1.0
"""Seconds before a crashed import is tried again (doubling after each crash)."""


class ImportStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class ImportRow(msgspec.Struct):
    sku: Sku
    name: Name
    description: Description
    category: CategoryName
    price_amount: Amount
    currency: Currency
    stock: Stock


async def submit_import(session: WriteSession, content: bytes, created_by: str) -> ImportJob:
    """Record a queued import and its file, and the job that works it after the commit."""
    now = utcnow()
    job = ImportJob(
        id=new_id(),
        kind=PRODUCT_IMPORT,
        status=ImportStatus.QUEUED,
        processed_rows=0,
        created_count=0,
        updated_count=0,
        failed_count=0,
        errors=[],
        created_by=created_by,
        created_at=now,
        updated_at=now,
    )
    session.add(job)
    await session.flush()
    session.add(ImportFile(job_id=job.id, content=content))
    jobs.enqueue(session, PRODUCT_IMPORT, {"import_id": job.id})
    return job


async def get_job(session: ReadSession, job_id: str) -> ImportJob:
    job = await session.get(ImportJob, job_id)
    if job is None:
        raise NotFound("No such job")
    return job


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
        outbox.add(session, ProductUpdated(product_id=str(values["id"]), updated_at=now))
    outcome.created += len(fresh)
    outcome.updated += len(changes)
    outcome.changed = [str(values["id"]) for values in changes]
    return outcome


class ProductImports:
    """The handler of `product_import` jobs: works an import batch by batch."""

    kind = PRODUCT_IMPORT
    backoff = Backoff(MAX_ATTEMPTS, RETRY_DELAY)

    def __init__(self, db: Database, pages: ProductPages, settings: CatalogSettings) -> None:
        self.db = db
        self.pages = pages
        self.settings = settings
        self.lease = settings.import_lease_seconds
        """Renewed by every batch: longer than one batch may take."""

    async def run(self, job: Job) -> None:
        import_id = job.payload["import_id"]
        async with self.db.write() as session:
            await jobs.extend(session, job, self.lease)
            started = await session.execute(
                update(ImportJob)
                .where(
                    ImportJob.id == import_id,
                    ImportJob.status.in_([ImportStatus.QUEUED, ImportStatus.RUNNING]),
                )
                .values(status=ImportStatus.RUNNING, updated_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            if rows_matched(started) != 1:  # finished already: nothing left to do
                await jobs.finish(session, job)
                return
            content = await session.scalar(
                select(ImportFile.content).where(ImportFile.job_id == import_id)
            )
            processed = await session.scalar(
                select(ImportJob.processed_rows).where(ImportJob.id == import_id)
            )
        await self.work(job, import_id, content or b"", processed or 0)

    async def work(self, job: Job, import_id: str, content: bytes, processed: int) -> None:
        try:
            text = await asyncio.to_thread(bytes.decode, content, "utf-8-sig")
        except UnicodeDecodeError:
            await self._finish(job, import_id, ImportStatus.FAILED, "The file is not UTF-8 text")
            return
        problem = header_problem(text)
        if problem is not None:
            await self._finish(job, import_id, ImportStatus.FAILED, problem)
            return
        total = await asyncio.to_thread(lambda: sum(1 for _ in read_records(text)) - 1)
        records = read_records(text)
        for _ in range(1 + processed):  # the header, then the rows already applied
            next(records, None)
        batch: list[Record] = []
        for record in records:
            batch.append(record)
            if len(batch) == self.settings.import_batch_size:
                processed = await self._apply(job, import_id, batch, processed, total)
                batch = []
        if batch or total == 0:
            processed = await self._apply(job, import_id, batch, processed, total)
        await self._finish(job, import_id, ImportStatus.SUCCEEDED, None)
        log.info("import_job_succeeded", job_id=import_id, rows=processed)

    async def failed(
        self, session: WriteSession, job: Job, error: BaseException, *, final: bool
    ) -> None:
        if not final:
            return
        now = utcnow()
        message = (
            f"The import crashed {job.attempts} times ({type(error).__name__}) and was "
            "stopped; rows in batches applied before the crash stay imported"
        )
        await session.execute(
            update(ImportJob)
            .where(
                ImportJob.id == job.payload["import_id"], ImportJob.status == ImportStatus.RUNNING
            )
            .values(status=ImportStatus.FAILED, error=message, finished_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )

    async def _apply(
        self, job: Job, import_id: str, batch: list[Record], processed: int, total: int
    ) -> int:
        now = utcnow()
        done = processed + len(batch)
        async with self.db.write() as session:
            await jobs.extend(session, job, self.lease)
            fenced = await session.execute(
                update(ImportJob)
                .where(
                    ImportJob.id == import_id,
                    ImportJob.status == ImportStatus.RUNNING,
                    ImportJob.processed_rows == processed,
                )
                .values(processed_rows=done, total_rows=total, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            if rows_matched(fenced) != 1:
                raise JobLost(job.id)
            outcome = await apply_batch(session, batch)
            row = await session.get_one(ImportJob, import_id, populate_existing=True)
            row.created_count += outcome.created
            row.updated_count += outcome.updated
            row.failed_count += len(outcome.errors)
            room = self.settings.import_max_errors - len(row.errors)
            if outcome.errors and room > 0:
                row.errors = [*row.errors, *outcome.errors[:room]]
        await self.pages.drop(outcome.changed)
        return done

    async def _finish(
        self, job: Job, import_id: str, status: ImportStatus, error: str | None
    ) -> None:
        now = utcnow()
        async with self.db.write() as session:
            await session.execute(
                update(ImportJob)
                .where(ImportJob.id == import_id, ImportJob.status == ImportStatus.RUNNING)
                .values(status=status, error=error, finished_at=now, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            await jobs.finish(session, job)
