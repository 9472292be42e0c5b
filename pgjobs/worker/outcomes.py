"""Where an attempt's outcome goes once its code has returned.

- a success, or an abort not retried: the completer's next group write
  (``Completer.submit``); the job's slot is freed at once;
- a failure or a retry: one write of its own, with the attempt's failure
  (``persist``; the worker's ``_persist_job_status``, procrastinate's name
  for it, calls it);
- a job stopped by the end of the shutdown grace: handed back
  (``pgjobs.worker.interruptions``).

Each returns once the outcome is stored, even if the job's task is
cancelled meanwhile (the write is shielded): a stopping worker waits for
every outcome.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from procrastinate import job_context, jobs

from pgjobs.failures import error_history
from pgjobs.worker import completer, executor

#: procrastinate's ``_persist_job_status`` with pgjobs' failure argument.
Persist = Callable[
    [
        jobs.Job,
        jobs.Status,
        Any,
        job_context.JobContext,
        job_context.JobResult | None,
        error_history.Failure | None,
    ],
    Awaitable[None],
]


class Outcomes:
    """The outcome writes' dispatch for one worker (see the module docstring)."""

    def __init__(
        self,
        *,
        completer: completer.Completer,
        free_slot: Callable[[job_context.JobContext], None],
        hand_back: Callable[[jobs.Job, job_context.JobContext], Awaitable[None]],
        persist: Persist,
        record_failure: Callable[..., Awaitable[bool]],
        delete_jobs: jobs.DeleteJobCondition,
        job_ids_to_abort: dict[int, job_context.AbortReason],
        logger: logging.Logger,
        log_extra: Callable[..., dict[str, Any]],
    ) -> None:
        self._completer = completer
        self._free_slot = free_slot
        self._hand_back = hand_back
        self._persist = persist
        self._record_failure = record_failure
        self._delete_jobs = delete_jobs
        self._job_ids_to_abort = job_ids_to_abort
        self._logger = logger
        self._log_extra = log_extra

    async def record(self, outcome: executor.Outcome) -> None:
        """Write an attempt's outcome. A success's is awaited on the group
        write directly, not through a task of its own."""
        context = outcome.context
        job, status = context.job, outcome.status
        if outcome.interrupted:
            await self._hand_back(job, context)
        elif outcome.retry_decision is None and status != jobs.Status.FAILED:
            await self.store(job, status, context)
        else:
            persist = asyncio.ensure_future(
                self._persist(
                    job,
                    status,
                    outcome.retry_decision,
                    context,
                    outcome.job_result,
                    outcome.failure,
                )
            )
            await completer.until_written(persist)

    async def persist(
        self,
        job: jobs.Job,
        status: jobs.Status,
        retry_decision: Any,
        context: job_context.JobContext,
        job_result: job_context.JobResult | None,
        failure: error_history.Failure | None,
    ) -> None:
        """procrastinate's ``Worker._persist_job_status``, with the attempt's
        failure: a success goes to the group write, a failure or a retry is
        written on its own (error row, retry decision, dead letter)."""
        assert job.id is not None
        if retry_decision is None and status != jobs.Status.FAILED:
            await self.store(job, status, context)
            return
        self._free_slot(context)
        stored = await self._record_failure(
            job, status, retry_decision, failure, self.delete_job(status)
        )
        if not stored:
            return
        # The end of procrastinate's _persist_job_status.
        self._job_ids_to_abort.pop(job.id, None)
        self._logger.debug(
            f"Acknowledged job completion {job.call_string}",
            extra=self._log_extra(
                action="finish_task",
                context=context,
                status=status,
                job_result=job_result,
            ),
        )

    def delete_job(self, status: jobs.Status) -> bool:
        """Whether the finished job's row goes (procrastinate's ``delete_jobs``)."""
        return {
            jobs.DeleteJobCondition.ALWAYS: True,
            jobs.DeleteJobCondition.NEVER: False,
            jobs.DeleteJobCondition.SUCCESSFUL: status == jobs.Status.SUCCEEDED,
        }[self._delete_jobs]

    async def store(
        self, job: jobs.Job, status: jobs.Status, context: job_context.JobContext
    ) -> None:
        """A success (or an abort not retried): written with the next group
        write."""
        assert job.id is not None
        self._free_slot(context)
        stored = self._completer.submit(job.id, status, self.delete_job(status))
        try:
            await completer.until_written(stored)
        finally:
            self._job_ids_to_abort.pop(job.id, None)
