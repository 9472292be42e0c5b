"""Deploys: the jobs still running when a stopping worker's grace ends.

A stopping worker (SIGTERM, SIGINT) claims nothing new and lets its running
jobs finish for ``PGJOBS_SHUTDOWN_GRACE`` seconds, sending heartbeats
meanwhile. A job still running when the grace ends is *interrupted*, not
aborted (``Interrupter`` calls ``interrupt_job`` for each):

- its run is stopped: an async task is cancelled (``CancelledError`` inside
  it); a sync task's thread cannot be stopped, so it is abandoned (its
  ``context.should_abort()`` turns true) and ends with the process, which no
  longer waits for it (``pgjobs.worker.sync_threads``); nothing it returns later is
  written;
- the job goes back to the queue to run again at once (``todo``, its
  scheduled time kept, no delay) with a ``WorkerShutdown`` row of kind
  ``interruption`` in its error history (``pgjobs jobs show``,
  ``pgjobs.job_errors``); no attempt is counted, no dead letter is written,
  and ``pgjobs.task_stats`` counts it as ``interrupted``, not as a failure;
- a job interrupted again and again (it outlives every grace) does not loop
  silently: its ``PGJOBS_MAX_INTERRUPTIONS``-th interruption (default 3) and
  every later one count as failed attempts (kind ``error``), so the task's
  retry policy retries it (with its backoff) or dead-letters it, and
  ``pgjobs health`` reports it (check ``interrupted_job``) while it waits or
  runs.

One statement per job (``pgjobs.interrupt_job``) touches only a job still
``doing`` under this worker: a job the stalled-job rescue (``pgjobs.failures.stalled``)
took meanwhile is left alone, and a job handed back is no longer ``doing``,
so the rescue never takes it twice. A worker that cannot reach the database
to hand a job back leaves it ``doing``; the rescue retries it later as the
job of a lost worker (``WorkerLost``, an attempt counted).
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from procrastinate import job_context
from procrastinate import jobs as procrastinate_jobs

from pgjobs.db import queries
from pgjobs.failures import dead_letters, retries
from pgjobs.worker import completer

if TYPE_CHECKING:
    from procrastinate import app as procrastinate_app

logger = logging.getLogger("pgjobs.interruptions")


class WorkerShutdown(Exception):
    """The job was still running when its worker's shutdown grace ended."""


@dataclass(frozen=True)
class Interruption:
    job_id: int
    task_name: str
    #: 'todo' (back in the queue, or retried by its policy), 'failed'
    #: (dead-lettered by its policy) or 'aborted' (its abort was requested).
    status: str
    #: Interruptions of this job so far, this one included.
    interruptions: int
    #: Whether this one counted as a failed attempt (PGJOBS_MAX_INTERRUPTIONS).
    counted: bool
    dead_letter_id: int | None


async def interrupt_job(
    app: procrastinate_app.App,
    job: procrastinate_jobs.Job,
    *,
    worker_id: int,
    grace: float,
    max_interruptions: int,
    delete_job: bool = False,
) -> Interruption | None:
    """Hand ``job`` back to the queue (or fail its attempt, past the limit);
    None if the job was no longer this worker's.

    Connection errors propagate: the worker retries.
    """
    assert job.id is not None
    error = WorkerShutdown(
        f"interrupted by worker shutdown: still running when worker "
        f"{worker_id}'s {grace:g} s shutdown grace ended"
    )
    # Used only from the max_interruptions-th interruption on.
    task = app.tasks.get(job.task_name)
    job_retry = retries.decide(getattr(task, "retry_strategy", None), error, job)
    decision = job_retry.retry_decision if job_retry is not None else None
    row: dict[str, Any] = await app.connector.execute_query_one_async(
        query=queries.query("worker_interrupt_job"),
        job_id=job.id,
        worker_id=worker_id,
        error_message=str(error),
        max_interruptions=max_interruptions,
        retry_at=(decision.retry_at or datetime.datetime.now(datetime.UTC))
        if decision is not None
        else None,
        priority=decision.priority if decision is not None else None,
        queue=decision.queue if decision is not None else None,
        lock=decision.lock if decision is not None else None,
        delete_job=delete_job,
    )
    if not row["applied"]:
        logger.warning(
            f"job {job.id} ({job.task_name}) was no longer this worker's when "
            "its shutdown grace ended: left as it is",
            extra={"action": "job_interrupt_skipped", "job_id": job.id},
        )
        return None
    result = Interruption(
        job_id=job.id,
        task_name=job.task_name,
        status=row["status"],
        interruptions=row["interruptions"],
        counted=row["interruptions"] >= max_interruptions
        and row["status"] != "aborted",
        dead_letter_id=row["dead_letter_id"],
    )
    _log(result, max_interruptions)
    if result.dead_letter_id is not None:
        await dead_letters.alert(
            app.connector, getattr(app, "on_dead_letter", None), result.dead_letter_id
        )
    return result


def _log(result: Interruption, max_interruptions: int) -> None:
    extra = {
        "action": "job_interrupted",
        "job_id": result.job_id,
        "task_name": result.task_name,
        "status": result.status,
        "interruptions": result.interruptions,
        "counted": result.counted,
    }
    if result.status == "aborted":
        logger.info(
            f"job {result.job_id} ({result.task_name}) interrupted by the worker "
            "shutdown: its abort was requested, it ends aborted",
            extra=extra,
        )
    elif not result.counted:
        logger.info(
            f"job {result.job_id} ({result.task_name}) interrupted by the worker "
            f"shutdown: back in the queue, no attempt counted (interruption "
            f"{result.interruptions}; PGJOBS_MAX_INTERRUPTIONS={max_interruptions})",
            extra=extra,
        )
    else:
        outcome = (
            "retried by its policy" if result.status == "todo" else "dead-lettered"
        )
        logger.warning(
            f"job {result.job_id} ({result.task_name}) interrupted by the worker "
            f"shutdown {result.interruptions} times (PGJOBS_MAX_INTERRUPTIONS="
            f"{max_interruptions}): counted as a failed attempt, {outcome}; it "
            "runs longer than the shutdown grace",
            extra=extra,
        )


class Interrupter:
    """A stopping worker's hand-backs: stops the jobs still running when its
    grace ends and hands each back (``interrupt_job``) through the
    completer, so a lost connection is retried like any outcome write."""

    def __init__(
        self,
        app: procrastinate_app.App,
        *,
        logger: logging.Logger,
        record: Callable[
            [int, Callable[[], Awaitable[Any]]], Coroutine[Any, Any, None]
        ],
        free_slot: Callable[[job_context.JobContext], None],
        slot_freed: Callable[[job_context.JobContext], bool],
        job_ids_to_abort: dict[int, job_context.AbortReason],
        worker_id: Callable[[], int | None],
        grace: float | None,
        max_interruptions: int,
        delete_job: bool,
    ) -> None:
        self._app = app
        self._logger = logger
        self._record = record
        self._free_slot = free_slot
        self._slot_freed = slot_freed
        self._job_ids_to_abort = job_ids_to_abort
        self._worker_id = worker_id
        #: The shutdown grace (None: wait for every job, procrastinate's default).
        self.grace = grace
        self.max_interruptions = max(1, max_interruptions)
        self._delete_job = delete_job
        #: Jobs still running when the shutdown grace ended, being handed back.
        self.interrupted: set[int] = set()

    async def finish(
        self,
        running: dict[asyncio.Task[Any], job_context.JobContext],
        log_extra: Callable[..., dict[str, Any]],
    ) -> None:
        """A stopping worker's running jobs: wait up to the grace for them to
        finish, then hand back the ones still running."""
        now = time.time()
        for context in running.values():
            duration = now - context.start_timestamp
            self._logger.info(
                f"Waiting for job to finish: worker: {context.job.call_string} "
                f"(started {duration:.3f} s ago)",
                extra=log_extra(context=None, action="ending_job", job_result=None),
            )
        if running:
            await asyncio.wait(running, timeout=self.grace)
        if running:
            await self.interrupt(running)

    async def interrupt(
        self, running: dict[asyncio.Task[Any], job_context.JobContext]
    ) -> None:
        """The grace is over: stop every job whose code still runs (an async
        one is cancelled, a sync one's thread is abandoned) and hand it back;
        outcomes already on their way are written as usual."""
        still = [
            (task, context)
            for task, context in running.items()
            if not self._slot_freed(context) and context.job.id is not None
        ]
        if still:
            ids = [context.job.id for _, context in still]
            self._logger.warning(
                "%d job(s) still running after the %g s shutdown grace: handing "
                "them back to the queue (PGJOBS_SHUTDOWN_GRACE): %s",
                len(still),
                self.grace or 0,
                ids,
                extra={"action": "jobs_interrupted", "job_ids": ids},
            )
        for task, context in still:
            assert context.job.id is not None
            self._job_ids_to_abort[context.job.id] = job_context.AbortReason.SHUTDOWN
            self.interrupted.add(context.job.id)
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    async def hand_back(
        self, job: procrastinate_jobs.Job, context: job_context.JobContext
    ) -> None:
        """Record an interrupted job's interruption; returns once it is
        stored, even if cancelled meanwhile."""
        assert job.id is not None
        worker_id = self._worker_id()
        assert worker_id is not None
        self._free_slot(context)
        call = functools.partial(
            interrupt_job,
            self._app,
            job,
            worker_id=worker_id,
            grace=self.grace or 0,
            max_interruptions=self.max_interruptions,
            delete_job=self._delete_job,
        )
        stored = asyncio.create_task(self._record(job.id, call))
        try:
            await completer.until_written(stored)
        finally:
            self.interrupted.discard(job.id)
            self._job_ids_to_abort.pop(job.id, None)
