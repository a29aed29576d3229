"""The job queue on SQLite: a job exists only if its transaction committed, runs once, is
retried with backoff, dies after its attempts (or at once when no retry can help), waits out
a dependency's outage without spending attempts, and comes back when replayed."""

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from bazaar.notifications.wiring import SCHEMA
from bazaar.platform import jobs
from bazaar.platform.clock import utcnow
from bazaar.platform.db import Database, WriteSession
from bazaar.platform.job_worker import JobWorker
from bazaar.platform.jobs import Backoff, Failed, GiveUp, Job, JobStatus
from bazaar.platform.schema import job as job_table
from tests.plugin import migrated


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    async with migrated("jobs", tmp_path, SCHEMA) as database:  # any service's: jobs are in all
        yield database


@dataclass
class Chores:
    """A handler whose runs fail as `outcomes` say, in turn (None: done)."""

    db: Database
    outcomes: list[BaseException | None] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    failures: list[tuple[str, bool]] = field(default_factory=list)
    kind: str = "chore"
    lease: float = 30.0
    backoff: Backoff = field(default_factory=lambda: Backoff(attempts=3, first_delay=60.0))

    async def run(self, job: Job) -> None:
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is not None:
            raise outcome
        async with self.db.write() as session:
            await jobs.finish(session, job)
        self.done.append(job.payload["name"])

    async def failed(
        self, session: WriteSession, job: Job, error: BaseException, *, final: bool
    ) -> None:
        self.failures.append((str(error), final))


async def enqueue(db: Database, name: str) -> str:
    async with db.write() as session:
        return jobs.enqueue(session, "chore", {"name": name})


async def job_row(db: Database, job_id: str):
    async with db.read() as session:
        return (await session.execute(select(job_table).where(job_table.c.id == job_id))).one()


async def make_due(db: Database) -> None:
    """As if every backoff and lease had run out."""
    async with db.write() as session:
        await session.execute(update(job_table).values(run_at=utcnow() - timedelta(seconds=1)))


async def test_a_job_runs_once_and_only_if_its_transaction_committed(db: Database) -> None:
    chores = Chores(db)
    with pytest.raises(RuntimeError):
        async with db.write() as session:
            jobs.enqueue(session, "chore", {"name": "rolled back"})
            raise RuntimeError("the change failed")
    await enqueue(db, "kept")
    worker = JobWorker(db, [chores])
    assert await worker.run_due() == 1
    assert await worker.run_due() == 0
    assert chores.done == ["kept"]
    async with db.read() as session:
        assert (await session.execute(select(job_table))).all() == []


async def test_a_failing_job_is_retried_after_its_backoff_then_dead(db: Database) -> None:
    chores = Chores(db, outcomes=[Failed("refused")] * 3)
    job_id = await enqueue(db, "flaky")
    worker = JobWorker(db, [chores])
    before = utcnow()
    assert await worker.run_due() == 1
    after = utcnow()
    row = await job_row(db, job_id)
    assert (row.status, row.attempts, row.last_error) == ("queued", 1, "Failed: refused")
    # 60 s and its jitter, from when the failure was recorded (between `before` and `after`)
    assert (row.run_at - before).total_seconds() >= 54
    assert (row.run_at - after).total_seconds() <= 66
    assert await worker.run_due() == 0  # not due before its backoff
    for _ in range(2):
        await make_due(db)
        assert await worker.run_due() == 1
    row = await job_row(db, job_id)
    assert (row.status, row.attempts) == (JobStatus.DEAD, 3)
    assert chores.failures == [("refused", False), ("refused", False), ("refused", True)]
    await make_due(db)
    assert await worker.run_due() == 0  # a dead job is never run again by itself
    [dead] = await _dead(db)
    assert (dead.id, dead.payload, dead.attempts) == (job_id, {"name": "flaky"}, 3)


async def test_give_up_kills_a_job_at_once(db: Database) -> None:
    chores = Chores(db, outcomes=[GiveUp("cannot compose")])
    job_id = await enqueue(db, "hopeless")
    assert await JobWorker(db, [chores]).run_due() == 1
    assert (await job_row(db, job_id)).status == JobStatus.DEAD
    assert chores.failures == [("cannot compose", True)]


async def test_a_dependency_briefly_down_is_waited_out_without_spending_attempts(
    db: Database,
) -> None:
    chores = Chores(db, outcomes=[ConnectionRefusedError("the database restarts")] * 5)
    job_id = await enqueue(db, "patient")
    worker = JobWorker(db, [chores])
    for _ in range(5):
        assert await worker.run_due() == 1
        assert (await job_row(db, job_id)).attempts == 0
        await make_due(db)
    assert await worker.run_due() == 1
    assert chores.done == ["patient"] and chores.failures == []


async def test_a_dead_job_replayed_runs_again_with_fresh_attempts(db: Database) -> None:
    chores = Chores(db, outcomes=[GiveUp("bad")])
    await enqueue(db, "second chance")
    worker = JobWorker(db, [chores])
    assert await worker.run_due() == 1
    async with db.write() as session:
        assert await jobs.replay_dead(session) == 1
    assert await worker.run_due() == 1
    assert chores.done == ["second chance"] and await _dead(db) == []


async def test_a_claim_taken_over_cannot_finish(db: Database) -> None:
    chores = Chores(db)
    await enqueue(db, "contested")
    [(_, stale)] = await jobs.claim(db, [chores], limit=1)
    await make_due(db)  # its lease ran out
    [(_, current)] = await jobs.claim(db, [chores], limit=1)
    assert current.attempts == stale.attempts + 1
    with pytest.raises(jobs.JobLost):
        await chores.run(stale)
    await chores.run(current)
    assert chores.done == ["contested"]


async def _dead(db: Database) -> list[jobs.DeadJob]:
    async with db.read() as session:
        return await jobs.dead_jobs(session)
