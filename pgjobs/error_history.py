"""Error history: one ``pgjobs.job_errors`` row per failed attempt.

When a job raises, procrastinate asks the task for a retry decision and then
persists the outcome through the JobManager. pgjobs' Task notes the failure
here (``remember``) and pgjobs' JobManager picks it up (``take``) to write the
error row in the same statement that retries or fails the job.
"""

from __future__ import annotations

import datetime
import traceback
from dataclasses import dataclass
from typing import Any

import psycopg
from procrastinate import jobs as procrastinate_jobs

from pgjobs import queries

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


# The worker passes the same Job object to the task's retry decision and to
# the JobManager call that persists the outcome: key by its identity. The
# entry holds the job, so the id cannot be reused before it is taken.
_pending: dict[int, tuple[procrastinate_jobs.Job, Failure]] = {}


def remember(job: procrastinate_jobs.Job, failure: Failure) -> None:
    _pending[id(job)] = (job, failure)


def take(job: procrastinate_jobs.Job) -> Failure | None:
    entry = _pending.pop(id(job), None)
    return entry[1] if entry is not None and entry[0] is job else None


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
        JobError(**row)
        for row in queries.fetch_all(conn, "failures_job_errors", job_id=job_id)
    ]
