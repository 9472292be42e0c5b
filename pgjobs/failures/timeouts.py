"""Per-job execution timeouts.

A task's ``timeout=`` (or the App's default) bounds each attempt, measured
from the moment the worker starts running it. An attempt over its deadline
raises ``JobTimeout`` (a ``TimeoutError``) in the worker: it is recorded as a
failed attempt and follows the task's retry policy like any other error.

- Async tasks are cancelled at the deadline (``asyncio.CancelledError`` is
  raised inside them, so ``finally`` blocks run).
- Sync tasks run in a thread, and Python cannot stop a thread safely. At the
  deadline the attempt is failed (``JobTimeout``) and its result is discarded,
  but the thread runs on until the function returns. A long sync task should
  call ``deadline_passed(context)`` (``pass_context=True``) in its loop and
  return early. It is never reported as a success.
"""

from __future__ import annotations

import asyncio
from typing import Any

from procrastinate import job_context
from procrastinate import worker as procrastinate_worker

from pgjobs.worker import middleware

_TIMED_OUT = "pgjobs.timed_out"


class JobTimeout(TimeoutError):
    """The attempt ran longer than its task's timeout."""


def deadline_passed(context: job_context.JobContext) -> bool:
    """True once this attempt has timed out: a sync task should stop now."""
    return bool(context.additional_context.get(_TIMED_OUT))


def timeout_of(task: Any) -> float | None:
    seconds = getattr(task, "timeout", None)
    return float(seconds) if seconds else None


@middleware.for_tasks(lambda task: timeout_of(task) is not None)
async def timeout_middleware(
    call_next: Any,
    context: job_context.JobContext,
    worker: procrastinate_worker.Worker,
) -> Any:
    """Worker middleware: fail the attempt with ``JobTimeout`` at its deadline."""
    seconds = timeout_of(worker.app.tasks.get(context.job.task_name))
    if seconds is None:
        return await call_next()
    scope = asyncio.timeout(seconds)
    try:
        async with scope:
            return await call_next()
    except TimeoutError:
        if not scope.expired():
            raise  # the task's own TimeoutError
        context.additional_context[_TIMED_OUT] = True
        raise JobTimeout(
            f"attempt ran longer than the {seconds:g} s timeout of task "
            f"{context.job.task_name!r}"
        ) from None
