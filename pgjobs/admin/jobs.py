"""Jobs admin API: status by id, listing, cancel/abort, retry of a failed job.

Every function takes settings, a database URL, or a psycopg connection (then
it runs in the caller's transaction and the caller commits).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pgjobs.db import connections, queries
from pgjobs.db.connections import Target
from pgjobs.errors import InvalidJobOptions, InvalidJobState, JobNotFound
from pgjobs.failures import error_history
from pgjobs.failures.error_history import JobError

if TYPE_CHECKING:
    pass

STATUSES = ("todo", "doing", "succeeded", "failed", "cancelled", "aborted")


@dataclass(frozen=True)
class JobStatus:
    """A job as ``get_job`` sees it: row, timestamps, progress, errors."""

    id: int
    queue_name: str
    task_name: str
    priority: int
    lock: str | None
    queueing_lock: str | None
    args: dict[str, Any]
    status: str
    scheduled_at: datetime.datetime | None
    attempts: int
    abort_requested: bool
    worker_id: int | None
    created_at: datetime.datetime | None
    started_at: datetime.datetime | None
    finished_at: datetime.datetime | None
    progress: int | None
    progress_message: str | None
    progress_updated_at: datetime.datetime | None
    #: Start-by deadline (enqueue option expires_at / expires_in), if any.
    expires_at: datetime.datetime | None = None
    #: When the job ended unstarted at its deadline ('cancelled'), if it did.
    expired_at: datetime.datetime | None = None
    #: The job's queue is paused (since then, by whom): no worker starts it.
    queue_paused_at: datetime.datetime | None = None
    queue_paused_by: str | None = None
    #: The limits holding the job back now, with their figures
    #: ("concurrency limit: 5 of 5 running for ...", "rate limit: ...").
    limit_reasons: list[str] = field(default_factory=list)
    errors: list[JobError] = field(default_factory=list)

    @property
    def last_error(self) -> JobError | None:
        return self.errors[-1] if self.errors else None

    @property
    def waiting_reasons(self) -> list[str]:
        """Why a waiting job has not started, or how it ended unstarted."""
        reasons = []
        if self.expired_at is not None:
            reasons.append(
                f"expired: not started by its deadline {self.expires_at}; "
                f"ended at {self.expired_at}"
            )
        if self.status == "todo":
            if self.queue_paused_at is not None:
                reasons.append(
                    f"queue {self.queue_name} is paused (since "
                    f"{self.queue_paused_at} by {self.queue_paused_by}): no "
                    "worker starts it until `pgjobs queues resume "
                    f"{self.queue_name}`"
                )
            reasons += [
                f"held back by its {reason} (`pgjobs limits list`)"
                for reason in self.limit_reasons
            ]
            if self.expires_at is not None:
                reasons.append(f"expires at {self.expires_at} if not started by then")
        return reasons


@dataclass(frozen=True)
class JobSummary:
    """One line of ``list_jobs``."""

    id: int
    queue_name: str
    task_name: str
    status: str
    priority: int
    attempts: int
    scheduled_at: datetime.datetime | None
    #: When the job was enqueued (its ``deferred`` event); None if unknown.
    enqueued_at: datetime.datetime | None
    progress: int | None
    last_error_type: str | None
    last_error_message: str | None
    #: When the job ended unstarted at its start-by deadline, if it did.
    expired_at: datetime.datetime | None = None


@dataclass(frozen=True)
class CancelResult:
    job_id: int
    #: 'cancelled' (was waiting) or 'abort_requested' (was running).
    outcome: Literal["cancelled", "abort_requested"]


def get_job(target: Target, job_id: int) -> JobStatus:
    """The job's state, attempts, timestamps, progress and failed attempts."""
    with connections.connection(target) as conn:
        row = queries.fetch_one(conn, "jobs_get", job_id=job_id)
        if row is None:
            raise JobNotFound(f"no job with id {job_id}")
        errors = error_history.job_errors(conn, job_id)
    return JobStatus(**row, errors=errors)


def list_jobs(
    target: Target,
    *,
    queue: str | None = None,
    task: str | None = None,
    status: str | None = None,
    older_than: datetime.timedelta | None = None,
    newer_than: datetime.timedelta | None = None,
    limit: int = 50,
) -> list[JobSummary]:
    """Newest jobs first, optionally filtered; ages count from the enqueue."""
    if status is not None and status not in STATUSES:
        raise InvalidJobOptions(
            f"unknown status {status!r} (one of {', '.join(STATUSES)})"
        )
    if limit < 1:
        raise InvalidJobOptions("limit must be at least 1")
    with connections.connection(target) as conn:
        rows = queries.fetch_all(
            conn,
            "jobs_list",
            queue=queue,
            task=task,
            status=status,
            older_than=older_than,
            newer_than=newer_than,
            limit=limit,
        )
    return [JobSummary(**row) for row in rows]


def cancel_job(
    target: Target,
    job_id: int,
    *,
    abort: bool = False,
) -> CancelResult:
    """Cancel a waiting job; with ``abort``, also ask a running one to stop.

    An async task is cancelled by its worker; a sync task must check
    ``context.should_abort()``. The running job ends 'aborted'.
    """
    with connections.connection(target) as conn:
        row = queries.fetch_one(conn, "jobs_cancel", job_id=job_id, abort=abort)
    if row is None:
        raise JobNotFound(f"no job with id {job_id}")
    before = row["status_before"]
    if row["job_id"] is None:
        if before == "doing":
            raise InvalidJobState(
                f"job {job_id} is running: use --abort (abort=True) to stop it"
            )
        raise InvalidJobState(f"job {job_id} is {before}: nothing to cancel")
    return CancelResult(
        job_id=job_id, outcome="abort_requested" if before == "doing" else "cancelled"
    )


def retry_job(target: Target, job_id: int) -> int:
    """Run a failed job again now (same id); its dead letter is marked replayed."""
    with connections.connection(target) as conn:
        row = queries.fetch_one(conn, "jobs_retry_failed", job_id=job_id)
        if row is not None and row["job_id"] is not None:
            queries.fetch_all(conn, "deadlines_forget", job_id=job_id)
        if row is None or row["job_id"] is None:
            state = queries.fetch_one(conn, "jobs_state", job_id=job_id)
            if state is None:
                raise JobNotFound(f"no job with id {job_id}")
            raise InvalidJobState(
                f"job {job_id} is {state['status']}: only failed jobs can be retried"
            )
    return int(row["job_id"])
