"""CSV product imports: bad rows reported by line, existing skus updated, jobs resumable."""

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from bazaar.catalog import imports, service
from bazaar.catalog.imports import ImportWorker, JobLost
from bazaar.catalog.models import ImportJob, Product
from bazaar.catalog.pages import ProductPages
from bazaar.catalog.settings import CatalogSettings
from bazaar.platform.db import Database
from bazaar.platform.settings import Env
from tests.catalog.conftest import add_product, outbox_events

HEADER = "sku,name,description,category,price_amount,currency,stock\n"


def worker(catalog: Database, pages: ProductPages, batch_size: int = 2) -> ImportWorker:
    settings = CatalogSettings.from_env(Env({"BAZAAR_IMPORT_BATCH_SIZE": str(batch_size)}))
    return ImportWorker(catalog, pages, settings)


async def job_of(catalog: Database, job_id: str) -> dict:
    async with catalog.read() as session:
        read = imports.job_read(await imports.get_job(session, job_id))
    return {"status": read.status, "progress": read.progress, **(read.result or {})}


async def run_import(catalog: Database, importer: ImportWorker, csv: str) -> dict:
    async with catalog.write() as session:
        job = await imports.submit_import(session, csv.encode(), "admin-1")
    async with catalog.write() as session:
        claimed = await imports.claim_job(session, lease_seconds=30)
    assert claimed is not None and claimed.id == job.id
    await importer.work(claimed)
    async with catalog.read() as session:
        read = imports.job_read(await imports.get_job(session, job.id))
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
    async with catalog.read() as session:
        products = {p.sku: p for p in await service.list_products(session, limit=10)}
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
            .values(
                status="running",
                processed_rows=2,
                heartbeat_at=job.created_at - timedelta(minutes=5),
            )
        )
    async with catalog.write() as session:
        claimed = await imports.claim_job(session, lease_seconds=1)
    assert claimed is not None and claimed.processed_rows == 2
    await worker(catalog, pages).work(claimed)
    async with catalog.read() as session:
        skus = [p.sku for p in await service.list_products(session, limit=10)]
    assert skus == ["SKU-2", "SKU-3", "SKU-4"]
    assert (await job_of(catalog, job.id))["status"] == "succeeded"


async def test_a_running_job_with_a_live_worker_is_not_claimed_twice(
    catalog: Database, pages: ProductPages
) -> None:
    async with catalog.write() as session:
        job = await imports.submit_import(session, (HEADER + "A,A,,x,1,USD,1\n").encode(), "a")
    async with catalog.write() as session:
        first = await imports.claim_job(session, lease_seconds=30)
    async with catalog.write() as session:
        assert await imports.claim_job(session, lease_seconds=30) is None
    # A worker whose view of the job is stale loses it instead of applying rows twice.
    assert first is not None and first.id == job.id
    importer = worker(catalog, pages)
    await importer.work(first)
    first.status, first.processed_rows = "running", 0
    with pytest.raises(JobLost):
        await importer.work(first)
