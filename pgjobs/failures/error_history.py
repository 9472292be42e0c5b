"""Error history: one ``pgjobs.job_errors`` row per failed attempt (and per
interruption by a worker shutdown, kind ``interruption``).

When a job raises, the worker (pgjobs.worker.executor) asks the task for a
retry decision and for the attempt's ``Failure`` (``Task.attempt_failure``),
and hands the failure on to pgjobs' JobManager (``retry_job`` /
``finish_job``), which writes the error row in the same statement that
retries or fails the job.
"""

from __future__ import annotations

import datetime
import traceback
from dataclasses import dataclass
from typing import Any

import psycopg
from procrastinate import jobs as procrastinate_jobs

from pgjobs.db import queries

#: Stored error messages and tracebacks are cut to these lengths.
MAX_MESSAGE = 4_000
MAX_TRACEBACK = 20_000


@dataclass(frozen=True)
class Failure:
    """What went wrong in one attempt, before it is written."""

    error_type: str
    message: str
    traceback: str | None
    #: Set when the job must go back to the queue without counting an attempt
    #: (its circuit breaker is open): no error row is written then.
    reschedule_at: datetime.datetime | None = None


@dataclass(frozen=True)
class JobError:
    """One failed attempt, as stored in ``pgjobs.job_errors``."""

    id: int
    job_id: int
    task_name: str
    queue_name: str
    attempt: int
    error_type: str
    error_message: str
    traceback: str | None
    worker_id: int | None
    failed_at: datetime.datetime
    #: 'error' (a failed attempt) or 'interruption' (interrupted by a worker
    #: shutdown and handed back, no attempt counted: pgjobs.worker.interruptions).
    kind: str = "error"


def describe(exception: BaseException) -> Failure:
    message = str(exception)
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    text = "".join(traceback.format_exception(exception))
    if len(text) > MAX_TRACEBACK:
        text = "...\n" + text[-(MAX_TRACEBACK - 4) :]
    return Failure(
        error_type=type(exception).__qualname__, message=message, traceback=text
    )


def unknown_failure(job: procrastinate_jobs.Job, known_task: bool) -> Failure:
    """A failure the worker reported without an exception we saw."""
    if not known_task:
        return Failure(
            error_type="TaskNotFound",
            message=f"no task named {job.task_name!r} in this worker's app",
            traceback=None,
        )
    return Failure(error_type="Unknown", message="", traceback=None)


def job_errors(conn: psycopg.Connection[Any], job_id: int) -> list[JobError]:
    """The failed attempts of one job, oldest first."""
    return [
        JobError(**row) for row in queries.fetch_all(conn, "jobs_errors", job_id=job_id)
    ]
