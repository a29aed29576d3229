"""The job queue: work a service does after a commit, retried until done or given up.

A use case enqueues a job with `enqueue(session, kind, payload)` in the same transaction as the
change that needs it, so a job exists if and only if its change does. A `JobWorker`
(`job_worker.py`) claims due jobs, runs their kind's `JobHandler` outside any transaction (a
send, a POST, a long import), and records the outcome:

- Claiming takes a job for its handler's `lease` (its `run_at` moves a lease ahead and its
  `attempts` grows by one) in a short transaction, with `FOR UPDATE SKIP LOCKED` on PostgreSQL
  so that workers in several processes never wait on each other; SQLite takes writers in turn.
  A worker that dies leaves its job to be claimed again when the lease ends (at least once).
- A handler that finishes calls `finish(session, job)` in the transaction that records its
  effect: the job row goes with that commit, fenced on the claim, so a worker that lost its
  claim (its lease ran out and another took the job) rolls its effect back (`JobLost`).
- A failure (`Failed` at the job's target, or any error that is not transient) is retried
  with exponential backoff and jitter (`Backoff`) up to its kind's attempts, then the job is
  dead: it stays in the table, `status = dead`, with its last error,
  until `replay_dead` queues it again (`bazaar dlq`). `GiveUp` kills it at once. A transient
  failure (the database or a dependency briefly down) is retried soon and not counted.
"""

import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol, TypeVar

import msgspec
from sqlalchemy import Select, bindparam, delete, select, update

from bazaar.platform.clock import utcnow
from bazaar.platform.db import (
    Database,
    ReadSession,
    WriteSession,
    insert_at_commit,
    signal_after_commit,
)
from bazaar.platform.ids import new_id
from bazaar.platform.queries import Query
from bazaar.platform.schema import job as job_table
from bazaar.platform.statements import rows_matched, run
from bazaar.platform.tracing import current_traceparent
from bazaar.platform.transient import is_transient, outlast

JOB_QUEUED = "jobs"
"""The signal that wakes a database's job workers after a commit that enqueued a job."""
TRANSIENT_RETRY = 1.0
"""Seconds before a job whose dependency was briefly down is tried again."""
ERROR_LENGTH = 2000
TRACE_KEY = "_traceparent"
"""Where a job row's payload keeps its trace context: no handler's payload has this key."""
RowT = TypeVar("RowT", bound=tuple[Any, ...])


class JobStatus(StrEnum):
    QUEUED = "queued"
    DEAD = "dead"


@dataclass(frozen=True)
class Job:
    id: str
    kind: str
    payload: dict[str, Any]
    attempts: int
    """Claims so far, this one included: the fence of `finish` and `extend`."""
    deadline: float
    """Until when (`time.monotonic()`) the claim is this worker's: an outcome may be recorded
    across a database outage until then (`outlast`)."""
    traceparent: str | None = None
    """The trace context of the transaction that queued it (`tracing.running_job`)."""


@dataclass(frozen=True)
class Backoff:
    """How often a kind of job is tried, and how long it waits between tries."""

    attempts: int
    first_delay: float
    max_delay: float = 300.0
    jitter: float = 0.1
    """The delay varies by up to this fraction either way, so retries spread out."""

    def delay(self, attempts: int) -> float:
        """The wait after the `attempts`-th failed try."""
        base = min(self.max_delay, self.first_delay * 2.0 ** (attempts - 1))
        return base * random.uniform(1 - self.jitter, 1 + self.jitter)


class GiveUp(Exception):
    """A failure no retry can help (an address that cannot be composed, a refused target):
    the job is dead at once."""


class Failed(Exception):
    """A try that failed at the job's own target (a POST not acknowledged, an SMTP server that
    did not take the email): counted against its attempts, however transient its cause (a
    refused connection, a timeout) would be for one of Bazaar's own servers."""


def reason(error: BaseException) -> str:
    """Why a try failed, for a service's own rows: `GiveUp` and `Failed` say it in their own
    words, anything else with its type."""
    if isinstance(error, (GiveUp, Failed)):
        return str(error)
    return f"{type(error).__name__}: {error}"


class JobLost(Exception):
    """The job's claim is no longer this worker's: its lease ran out and another took it."""


class JobHandler(Protocol):
    """What a service runs for one kind of job."""

    kind: str
    lease: float
    """Seconds a claimed job stays this worker's: longer than one run may take."""
    backoff: Backoff

    async def run(self, job: Job) -> None:
        """Do the job, and `finish` it in the transaction that records its effect."""

    async def failed(
        self, session: WriteSession, job: Job, error: BaseException, *, final: bool
    ) -> None:
        """Record a failed try in the service's own rows; `final` when the job is dead."""


def enqueue(
    session: WriteSession, kind: str, payload: Mapping[str, Any], *, delay: float = 0.0
) -> str:
    """Queue a job that runs once this transaction commits (and never if it rolls back).

    The job's row is written with the transaction's other queued jobs (`insert_at_commit`);
    its payload carries the trace context of the transaction (`TRACE_KEY`), which the handler
    never sees."""
    now = utcnow()
    traceparent = current_traceparent()
    row = {
        "id": new_id(),
        "kind": kind,
        "payload": msgspec.json.encode(
            {**payload, TRACE_KEY: traceparent} if traceparent else payload
        ),
        "status": JobStatus.QUEUED,
        "attempts": 0,
        "run_at": now + timedelta(seconds=delay),
        "created_at": now,
    }
    insert_at_commit(session, job_table, row)
    signal_after_commit(session, JOB_QUEUED)
    return str(row["id"])


async def finish(session: WriteSession, job: Job) -> None:
    """Remove the job with this transaction's commit; `JobLost` if its claim is gone."""
    done = await run(session, _FINISH, {"job_id": job.id, "attempts": job.attempts})
    if done.matched != 1:
        raise JobLost(job.id)


async def extend(session: WriteSession, job: Job, lease: float) -> None:
    """Keep the claim `lease` seconds more (a long job, batch by batch); `JobLost` if gone."""
    kept = await session.execute(
        update(job_table)
        .where(job_table.c.id == job.id, job_table.c.attempts == job.attempts)
        .values(run_at=utcnow() + timedelta(seconds=lease))
        .execution_options(synchronize_session=False)
    )
    if rows_matched(kept) != 1:
        raise JobLost(job.id)


_FINISH = Query(
    delete(job_table).where(
        job_table.c.id == bindparam("job_id"), job_table.c.attempts == bindparam("attempts")
    )
)


def claiming(query: Select[RowT]) -> Select[RowT]:
    """`query`'s rows locked by this transaction, skipping those another worker has locked
    (PostgreSQL; SQLite takes writers in turn): how jobs and outbox rows are claimed."""
    return query.with_for_update(skip_locked=True)


async def claim(
    db: Database, handlers: Sequence[JobHandler], limit: int
) -> list[tuple[JobHandler, Job]]:
    """Take up to `limit` due jobs of the handlers' kinds, each for its handler's lease, in
    one short transaction (a worker that wakes claims once, whatever kinds it runs)."""
    by_kind = {handler.kind: handler for handler in handlers}
    now = utcnow()
    claimed: list[tuple[JobHandler, Job]] = []
    async with db.write(bookkeeping=True) as session:
        due: Select[tuple[str, str, bytes]] = claiming(
            select(job_table.c.id, job_table.c.kind, job_table.c.payload)
            .where(
                job_table.c.kind.in_(by_kind),
                job_table.c.status == JobStatus.QUEUED,
                job_table.c.run_at <= now,
            )
            .order_by(job_table.c.run_at)
            .limit(limit)
        )
        rows = (await session.execute(due)).all()
        for kind in {row.kind for row in rows}:
            handler = by_kind[kind]
            payloads = {row.id: row.payload for row in rows if row.kind == kind}
            # The `run_at` guard leaves out what another claimer took meanwhile (SQLite).
            taken = await session.execute(
                update(job_table)
                .where(job_table.c.id.in_(payloads), job_table.c.run_at <= now)
                .values(
                    run_at=now + timedelta(seconds=handler.lease),
                    attempts=job_table.c.attempts + 1,
                )
                .returning(job_table.c.id, job_table.c.attempts)
                .execution_options(synchronize_session=False)
            )
            deadline = time.monotonic() + handler.lease
            for job_id, attempts in taken.all():
                payload, traceparent = _decoded(payloads[job_id])
                job = Job(job_id, kind, payload, attempts, deadline, traceparent)
                claimed.append((handler, job))
    return claimed


async def record_failure(
    db: Database, handler: JobHandler, job: Job, error: BaseException
) -> JobStatus | None:
    """Count a failed try: due again after its backoff, or dead after the last attempt (or
    at once for `GiveUp`); a transient failure is due again soon and not counted. Returns
    the job's status, None when the claim was no longer this worker's."""
    transient = uncounted(error)
    final = not transient and (
        isinstance(error, GiveUp) or job.attempts >= handler.backoff.attempts
    )
    if transient:
        values: dict[str, Any] = {
            "attempts": job.attempts - 1,
            "run_at": utcnow() + timedelta(seconds=TRANSIENT_RETRY),
        }
    elif final:
        values = {"status": JobStatus.DEAD, "run_at": utcnow()}  # when it died
    else:
        values = {"run_at": utcnow() + timedelta(seconds=handler.backoff.delay(job.attempts))}
    message = f"{type(error).__name__}: {error}"[:ERROR_LENGTH]

    async def record() -> JobStatus | None:
        async with db.write() as session:
            counted = await session.execute(
                update(job_table)
                .where(job_table.c.id == job.id, job_table.c.attempts == job.attempts)
                .values(last_error=message, **values)
                .execution_options(synchronize_session=False)
            )
            if rows_matched(counted) != 1:
                return None
            if not transient:
                await handler.failed(session, job, error, final=final)
        return JobStatus.DEAD if final else JobStatus.QUEUED

    return await outlast(record, job.deadline)


DEAD_LETTER_PREFIX = "job:"
"""How `bazaar dlq` names the dead jobs of a kind among the bus's dead letters: `job:email`."""


@dataclass(frozen=True)
class DeadJob:
    id: str
    kind: str
    payload: dict[str, Any]
    attempts: int
    last_error: str | None
    failed_at: datetime


async def dead_jobs(session: ReadSession, kinds: Sequence[str] | None = None) -> list[DeadJob]:
    """The dead jobs (of `kinds`), oldest first."""
    query = select(job_table).where(job_table.c.status == JobStatus.DEAD)
    if kinds is not None:
        query = query.where(job_table.c.kind.in_(kinds))
    rows = (await session.execute(query.order_by(job_table.c.run_at))).all()
    return [
        DeadJob(
            row.id,
            row.kind,
            _decoded(row.payload)[0],
            row.attempts,
            row.last_error,
            row.run_at,
        )
        for row in rows
    ]


async def replay_dead(session: WriteSession, job_id: str | None = None) -> int:
    """Queue dead jobs again (all, or one) with their attempts reset; how many."""
    query = update(job_table).where(job_table.c.status == JobStatus.DEAD)
    if job_id is not None:
        query = query.where(job_table.c.id == job_id)
    replayed = await session.execute(
        query.values(status=JobStatus.QUEUED, attempts=0, run_at=utcnow()).execution_options(
            synchronize_session=False
        )
    )
    if rows_matched(replayed):
        signal_after_commit(session, JOB_QUEUED)
    return rows_matched(replayed)


def _decoded(raw: bytes) -> tuple[dict[str, Any], str | None]:
    """A job row's payload for its handler, and the trace context it carried."""
    payload: dict[str, Any] = msgspec.json.decode(raw)
    traceparent = payload.pop(TRACE_KEY, None)
    return payload, traceparent if isinstance(traceparent, str) else None


def uncounted(error: BaseException) -> bool:
    """A dependency of Bazaar's own briefly down: the try does not count."""
    return not isinstance(error, (GiveUp, Failed)) and is_transient(error)
