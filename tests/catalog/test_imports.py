"""CSV product imports: bad rows reported by line, existing skus updated, jobs resumable,
a job that keeps crashing failed after its attempts."""

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from bazaar.catalog import imports, service
from bazaar.catalog.api import job_read
from bazaar.catalog.csv_records import Record
from bazaar.catalog.imports import MAX_ATTEMPTS, BatchOutcome, ProductImports
from bazaar.catalog.models import ImportJob, Product
from bazaar.catalog.pages import ProductPages
from bazaar.catalog.settings import CatalogSettings
from bazaar.platform import jobs
from bazaar.platform.clock import utcnow
from bazaar.platform.db import Database, WriteSession
from bazaar.platform.job_worker import JobWorker
from bazaar.platform.jobs import JobLost
from bazaar.platform.schema import job as job_table
from bazaar.platform.settings import Env
from tests.catalog.conftest import add_product, outbox_events

HEADER = "sku,name,description,category,price_amount,currency,stock\n"


def worker(catalog: Database, pages: ProductPages, batch_size: int = 2) -> JobWorker:
    settings = CatalogSettings.from_env(Env({"BAZAAR_IMPORT_BATCH_SIZE": str(batch_size)}))
    return JobWorker(catalog, [ProductImports(catalog, pages, settings)], batch_size=1)


async def job_of(catalog: Database, job_id: str) -> dict:
    async with catalog.read() as session:
        read = job_read(await imports.get_job(session, job_id))
    return {"status": read.status, "progress": read.progress, **(read.result or {})}


async def run_import(catalog: Database, importer: JobWorker, csv: str) -> dict:
    async with catalog.write() as session:
        job = await imports.submit_import(session, csv.encode(), "admin-1")
    assert await importer.run_due() == 1
    async with catalog.read() as session:
        read = job_read(await imports.get_job(session, job.id))
    return {
        "status": read.status,
        "progress": read.progress,
        "error": read.error,
        **(read.result or {}),
    }


async def test_bad_rows_are_reported_by_line_and_the_others_imported(
    catalog: Database, pages: ProductPages
) -> None:
    existing = await add_product(catalog, sku="MUG", stock=1)
    csv = (
        HEADER
        + "MUG,Blue mug,,kitchen,450,USD,9\n"  # line 2: updates the existing product
        + "PEN,Pen,,office,-5,USD,3\n"  # line 3: negative price
        + 'NOTE,"Note\nbook",lined,office,300,EUR,4\n'  # lines 4-5: one record
        + "\n"  # line 6: blank, skipped
        + "CUP,Cup,,kitchen,200,usd,1\n"  # line 7: bad currency
        + "BAD,only three,fields\n"  # line 8
        + "LAMP,Lamp,,home,1200,USD,2\n"
    )
    job = await run_import(catalog, worker(catalog, pages), csv)
    assert job["status"] == "succeeded" and job["progress"] == 1.0
    assert (job["created"], job["updated"], job["failed"]) == (2, 1, 3)
    assert [error["line"] for error in job["errors"]] == [3, 7, 8]
    assert "price_amount" in job["errors"][0]["message"]
    products = {p.sku: p for p in await service.list_products(catalog, limit=10)}
    assert set(products) == {"MUG", "NOTE", "LAMP"}
    assert products["MUG"].id == existing and products["MUG"].stock == 9
    assert products["NOTE"].name == "Note\nbook" and products["NOTE"].currency == "EUR"
    changed = {event["product_id"] for event in await outbox_events(catalog, "product.updated")}
    assert changed == {p.id for p in products.values()}


async def test_a_wrong_header_fails_the_job(catalog: Database, pages: ProductPages) -> None:
    job = await run_import(catalog, worker(catalog, pages), "sku,name,price\nA,B,1\n")
    assert job["status"] == "failed" and "header" in job["error"]
    async with catalog.read() as session:
        assert await session.scalar(select(Product.id)) is None


async def test_a_job_taken_over_resumes_after_the_last_committed_batch(
    catalog: Database, pages: ProductPages
) -> None:
    rows = "".join(f"SKU-{n},Item {n},,misc,100,USD,1\n" for n in range(5))
    async with catalog.write() as session:
        job = await imports.submit_import(session, (HEADER + rows).encode(), "admin-1")
    # A first worker committed two rows, then died: its lease has run out.
    async with catalog.write() as session:
        await session.execute(
            update(ImportJob)
            .where(ImportJob.id == job.id)
            .values(status="running", processed_rows=2)
        )
        await session.execute(update(job_table).values(attempts=1))
    assert await worker(catalog, pages).run_due() == 1
    skus = [p.sku for p in await service.list_products(catalog, limit=10)]
    assert skus == ["SKU-2", "SKU-3", "SKU-4"]
    assert (await job_of(catalog, job.id))["status"] == "succeeded"


async def test_a_running_job_with_a_live_worker_is_not_claimed_twice(
    catalog: Database, pages: ProductPages
) -> None:
    async with catalog.write() as session:
        job = await imports.submit_import(session, (HEADER + "A,A,,x,1,USD,1\n").encode(), "a")
    settings = CatalogSettings.from_env(Env({}))
    first, second = ProductImports(catalog, pages, settings), worker(catalog, pages)
    [(_, claimed)] = await jobs.claim(catalog, [first], limit=1)
    assert await second.run_due() == 0  # claimed by the first worker
    await expire_lease(catalog)  # the first worker stalls past its lease
    assert await second.run_due() == 1  # the second takes the job over and imports
    # The first worker loses the job instead of applying its rows twice.
    with pytest.raises(JobLost):
        await first.run(claimed)
    assert (await job_of(catalog, job.id))["created"] == 1
    assert await skus(catalog) == {"A"}


async def skus(catalog: Database) -> set[str]:
    return {p.sku for p in await service.list_products(catalog, limit=100)}


async def test_a_field_over_the_csv_limit_is_a_bad_row_and_the_other_rows_import(
    catalog: Database, pages: ProductPages
) -> None:
    huge = "x" * 200_000
    csv = (
        HEADER
        + "A,Lamp,,home,100,USD,1\n"  # line 2
        + f"HUGE,Huge,{huge},home,100,USD,1\n"  # line 3: a field over the limit
        + "B,Pen,,office,100,USD,1\n"  # line 4
        + "C,Cup,,kitchen,-1,USD,1\n"  # line 5: negative price
        + "D,Mug,,kitchen,100,USD,1\n"  # line 6
    )
    job = await run_import(catalog, worker(catalog, pages), csv)
    assert job["status"] == "succeeded" and job["error"] is None
    assert (job["processed"], job["total"]) == (5, 5)
    assert (job["created"], job["updated"], job["failed"]) == (3, 0, 2)
    assert [error["line"] for error in job["errors"]] == [3, 5]
    assert job["errors"][0]["message"] == "A field is longer than 131,072 characters"
    assert await skus(catalog) == {"A", "B", "D"}


async def test_a_quoted_field_over_the_limit_is_skipped_to_its_closing_quote(
    catalog: Database, pages: ProductPages
) -> None:
    # The huge field spans lines 3-5 and holds what looks like a row: it is not imported, and
    # the lines after it keep their numbers. Lines may end with \r\n or a lone \r.
    huge = "y" * 140_000
    csv = (
        HEADER
        + "A,Lamp,,home,100,USD,1\r\n"  # line 2
        + f'HUGE,Huge,"{huge}\nEVIL,Evil,,x,1,USD,1\n""quoted"" end",home,100,USD,1\n'  # 3-5
        + "B,Pen,,office,100,USD,1\r"  # line 6
        + "C,only three,fields\n"  # line 7
        + 'D,"Note\nbook",,office,100,USD,1\n'  # lines 8-9
        + "E,Oops,,office,100,usd,1\n"  # line 10: bad currency
    )
    job = await run_import(catalog, worker(catalog, pages), csv)
    assert job["status"] == "succeeded"
    assert [error["line"] for error in job["errors"]] == [3, 7, 10]
    assert "131,072" in job["errors"][0]["message"]
    assert await skus(catalog) == {"A", "B", "D"}


async def test_a_header_over_the_field_limit_fails_the_job_with_the_header_message(
    catalog: Database, pages: ProductPages
) -> None:
    csv = "sku," + "n" * 200_000 + "\nA,Lamp,,home,100,USD,1\n"
    job = await run_import(catalog, worker(catalog, pages), csv)
    assert job["status"] == "failed" and "header" in job["error"]
    assert await skus(catalog) == set()


async def submit(catalog: Database, csv: str) -> str:
    async with catalog.write() as session:
        return (await imports.submit_import(session, csv.encode(), "admin-1")).id


async def expire_lease(catalog: Database) -> None:
    """As if the claim's lease (or a crash's backoff) had run out."""
    async with catalog.write() as session:
        await session.execute(update(job_table).values(run_at=utcnow() - timedelta(hours=1)))


async def attempts_of(catalog: Database, job_id: str) -> tuple[str, int, str | None]:
    async with catalog.read() as session:
        job = await imports.get_job(session, job_id)
        attempts = await session.scalar(select(job_table.c.attempts))
        return job.status, attempts or 0, job.error


ROWS = "A,Lamp,,home,100,USD,1\nB,Pen,,office,100,USD,1\nC,Cup,,x,1,USD,1\nD,Mug,,x,1,USD,1\n"


async def test_a_job_that_crashes_every_time_fails_after_its_attempts(
    catalog: Database, pages: ProductPages, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_batch = imports.apply_batch

    async def crash_on_c(session: WriteSession, records: list[Record]) -> BatchOutcome:
        if any(record.fields[:1] == ["C"] for record in records):
            raise RuntimeError("a bug")
        return await apply_batch(session, records)

    monkeypatch.setattr(imports, "apply_batch", crash_on_c)
    job_id = await submit(catalog, HEADER + ROWS)
    importer = worker(catalog, pages, batch_size=2)
    for attempt in range(1, MAX_ATTEMPTS):
        assert await importer.run_due() == 1
        assert await attempts_of(catalog, job_id) == ("running", attempt, None)
        # the retry waits for its backoff: a worker asking at once finds nothing to claim
        assert await importer.run_due() == 0
        await expire_lease(catalog)
    assert await importer.run_due() == 1
    status, attempts, error = await attempts_of(catalog, job_id)
    assert (status, attempts) == ("failed", MAX_ATTEMPTS)
    assert error is not None and f"crashed {MAX_ATTEMPTS} times (RuntimeError)" in error
    # a failed job is never taken again; the batch before the crash stays imported
    await expire_lease(catalog)
    assert await importer.run_due() == 0
    job = await job_of(catalog, job_id)
    assert job["status"] == "failed" and job["processed"] == 2
    assert await skus(catalog) == {"A", "B"}


async def test_an_outage_while_importing_waits_without_spending_attempts(
    catalog: Database, pages: ProductPages, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_batch = imports.apply_batch
    outage = {"rounds": MAX_ATTEMPTS + 2}

    async def database_down(session: WriteSession, records: list[Record]) -> BatchOutcome:
        if outage["rounds"] > 0:
            outage["rounds"] -= 1
            raise ConnectionRefusedError("the database is restarting")
        return await apply_batch(session, records)

    monkeypatch.setattr(imports, "apply_batch", database_down)
    job_id = await submit(catalog, HEADER + ROWS)
    importer = worker(catalog, pages, batch_size=2)
    while outage["rounds"] > 0:
        assert await importer.run_due() == 1
        assert await attempts_of(catalog, job_id) == ("running", 0, None)
        await expire_lease(catalog)
    assert await importer.run_due() == 1
    assert await attempts_of(catalog, job_id) == ("succeeded", 0, None)
    assert await skus(catalog) == {"A", "B", "C", "D"}
