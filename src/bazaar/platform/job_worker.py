"""The loop that runs a database's jobs (`jobs.py`): woken after each commit that enqueued
one, claiming a batch, running it, recording what failed."""

import asyncio
import time
from collections.abc import Sequence

from bazaar.platform.db import Database
from bazaar.platform.jobs import (
    JOB_QUEUED,
    Job,
    JobHandler,
    JobLost,
    JobStatus,
    claim,
    record_failure,
    uncounted,
)
from bazaar.platform.loops import Waker
from bazaar.platform.observability import JOB_TIME, JOBS_RUN, log
from bazaar.platform.tracing import running_job


class JobWorker:
    """Runs the jobs of one database for some handlers: woken after a commit that enqueued
    one (in this process, or by PostgreSQL's NOTIFY from another), else every poll interval.

    Due jobs are claimed `batch_size` at a time, oldest first whatever their kind, and run
    `lanes` at once.
    """

    def __init__(
        self,
        db: Database,
        handlers: Sequence[JobHandler],
        *,
        poll_interval: float = 1.0,
        batch_size: int = 20,
        lanes: int = 8,
    ) -> None:
        self.db = db
        self.handlers = list(handlers)
        self.batch_size = batch_size
        self._lanes = asyncio.Semaphore(lanes)
        self._full = False
        self._waker = Waker(poll_interval)
        db.listen(JOB_QUEUED, self._waker.wake)

    def wake(self) -> None:
        self._waker.wake()

    async def run(self) -> None:
        # jobs enqueued by other processes (the API's) wake it too
        async with self.db.woken_by_others(JOB_QUEUED, self._waker.wake):
            while True:
                try:
                    await self.run_due()
                except Exception as error:  # the database is busy or gone: try again shortly
                    log.warning("job_worker_waiting", database=self.db.name, error=str(error))
                    self._full = False
                if not self._full:  # a full batch: more may be due at once
                    await self._waker.wait()

    async def run_due(self) -> int:
        """Claim one batch of due jobs and run them; how many ran."""
        claimed = await claim(self.db, self.handlers, self.batch_size)
        self._full = len(claimed) == self.batch_size
        await asyncio.gather(*(self._run(handler, job) for handler, job in claimed))
        return len(claimed)

    async def _run(self, handler: JobHandler, job: Job) -> None:
        async with self._lanes:
            started = time.perf_counter()
            try:
                with running_job(job):
                    await handler.run(job)
            except JobLost:
                JOBS_RUN.labels(job.kind, "lost").inc()
                log.warning("job_lost", kind=job.kind, job_id=job.id)
            except Exception as error:
                await self._failed(handler, job, error)
            else:
                JOB_TIME.labels(job.kind).observe(time.perf_counter() - started)
                JOBS_RUN.labels(job.kind, "done").inc()

    async def _failed(self, handler: JobHandler, job: Job, error: Exception) -> None:
        try:
            status = await record_failure(self.db, handler, job, error)
        except Exception as failure:  # the claim's lease will bring it back
            log.warning(
                "job_failure_not_recorded", kind=job.kind, job_id=job.id, error=str(failure)
            )
            return
        outcome = "retried" if status == JobStatus.QUEUED else "dead"
        if uncounted(error):
            outcome = "waited"
        JOBS_RUN.labels(job.kind, outcome).inc()
        report = log.error if status == JobStatus.DEAD else log.warning
        report("job_failed", kind=job.kind, job_id=job.id, status=status, error=str(error))
