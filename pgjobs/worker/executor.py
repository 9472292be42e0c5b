"""Running one job (River's ``jobexecutor``): the task's code under its
middleware, and how the attempt ended.

procrastinate's ``Worker._process_job`` with the same outcomes, retry
decisions and log records, and less work per job:

- a task's kind and middleware chain are worked out once per task, not per
  job (``_TaskPlan``);
- log messages (the job's call string, three per job) are built only when a
  record at their level would be emitted.

The executor decides the outcome (``Outcome``) and hands it to the worker's
``record`` callback, which writes it (pgjobs.worker.completer); see
``Executor.__init__`` for what else it is given.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from procrastinate import exceptions, job_context, jobs
from procrastinate import middleware as procrastinate_middleware
from procrastinate import worker as procrastinate_worker

from pgjobs.failures import error_history
from pgjobs.tasks import Task
from pgjobs.worker import middleware, sync_threads


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended, for the worker to record."""

    context: job_context.JobContext
    status: jobs.Status
    #: The task's retry decision (None: not retried).
    retry_decision: Any
    #: What the error history records of a failed attempt (None: nothing
    #: to record, or a task that is not pgjobs' own).
    failure: error_history.Failure | None
    job_result: job_context.JobResult
    #: Stopped by the end of the shutdown grace: to be handed back.
    interrupted: bool


class Executor:
    """Runs the jobs of one worker (see the module docstring)."""

    def __init__(
        self,
        *,
        find_task: Callable[[str], Any],
        worker: procrastinate_worker.Worker,
        task_middleware: Callable[[Any, bool], list[Any]],
        worker_middleware: list[Any],
        logger: logging.Logger,
        log_extra: Callable[..., dict[str, Any]],
        log_outcome: Callable[..., None],
        interrupted: Callable[[int | None], bool],
        record: Callable[[Outcome], Awaitable[None]],
    ) -> None:
        """
        - ``find_task(name)``: the app's task of that name, or None;
        - ``worker``: what middleware are given as their worker;
        - ``task_middleware(task, is_async)``: a task's middleware chain
          (procrastinate's ``Worker._resolve_task_middlewares``);
        - ``worker_middleware``: the worker's middleware, outermost first;
        - ``logger``, ``log_extra(action, context, job_result, **kw)``: the
          worker's logger and log record extras;
        - ``log_outcome(status, context, job_result, job_retry, exc_info)``:
          procrastinate's outcome log record;
        - ``interrupted(job_id)``: the job was stopped by the end of the
          shutdown grace;
        - ``record(outcome)``: write the outcome; returns once it is stored.
        """
        self._find_task = find_task
        self._worker = worker
        self._task_middleware = task_middleware
        self._worker_middleware = worker_middleware
        self.logger = logger
        self._log_extra = log_extra
        self._log_outcome = log_outcome
        self._interrupted = interrupted
        self._record = record
        self._plans: dict[str, _TaskPlan] = {}

    async def run(self, context: job_context.JobContext) -> None:
        """Run one job and record its outcome (procrastinate's
        ``Worker._process_job``)."""
        job = context.job
        task = self._find_task(job.task_name)
        logger = self.logger
        job_retry: exceptions.JobRetry | None = None
        exc_info: bool | BaseException = False
        retry_decision: Any = None
        failure: error_history.Failure | None = None
        job_result = job_context.JobResult(start_timestamp=context.start_timestamp)
        try:
            if not task:
                raise exceptions.TaskNotFound
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    f"Loaded job info, about to start job {job.call_string}",
                    extra=self._log_extra(
                        context=context, action="loaded_job_info", job_result=job_result
                    ),
                )
            if logger.isEnabledFor(logging.INFO):
                logger.info(
                    f"Starting job {job.call_string}",
                    extra=self._log_extra(
                        context=context, action="start_job", job_result=job_result
                    ),
                )
            job_result.result = await self._plan(task).run(context)
        except BaseException as e:
            exc_info = e
            # An aborted job can be retried if the abort is a shutdown's.
            if not isinstance(e, exceptions.JobAborted) or (
                context.abort_reason() == job_context.AbortReason.SHUTDOWN
            ):
                if isinstance(task, Task):
                    failure = task.attempt_failure(e)
                job_retry = (
                    task.get_retry_exception(exception=e, job=job) if task else None
                )
                retry_decision = job_retry.retry_decision if job_retry else None
                if isinstance(e, exceptions.TaskNotFound):
                    logger.exception(
                        "Task was not found",
                        extra=self._log_extra(
                            context=context,
                            action="task_not_found",
                            exception=str(e),
                            job_result=job_result,
                        ),
                    )
        finally:
            job_result.end_timestamp = time.time()
            if isinstance(exc_info, (exceptions.JobAborted, asyncio.CancelledError)):
                status = jobs.Status.ABORTED
            elif exc_info:
                status = jobs.Status.FAILED
            else:
                status = jobs.Status.SUCCEEDED
            failed = status == jobs.Status.FAILED and not job_retry
            interrupted = bool(exc_info) and self._interrupted(job.id)
            # procrastinate logs outcomes on its module's logger.
            outcome_logger = procrastinate_worker.logger
            if not interrupted and outcome_logger.isEnabledFor(
                logging.ERROR if failed else logging.INFO
            ):
                self._log_outcome(
                    status=status,
                    context=context,
                    job_result=job_result,
                    job_retry=job_retry,
                    exc_info=exc_info,
                )
            await self._record(
                Outcome(
                    context=context,
                    status=status,
                    retry_decision=retry_decision,
                    failure=failure,
                    job_result=job_result,
                    interrupted=interrupted,
                )
            )

    def _plan(self, task: Any) -> _TaskPlan:
        plan = self._plans.get(task.name)
        if plan is None or plan.task is not task:
            plan = self._plans[task.name] = _TaskPlan(
                task, self._task_middleware, self._worker_middleware, self._worker
            )
        return plan


class _TaskPlan:
    """How one task's jobs run on this worker, worked out once per task:
    procrastinate's ``_process_job`` resolved it for every job (the task's
    kind, its middleware chain). Worker middleware that declares the tasks
    it acts on (``pgjobs.worker.middleware.for_tasks``) is left out of the chain of
    the other tasks."""

    def __init__(
        self,
        task: Any,
        task_middleware: Callable[[Any, bool], list[Any]],
        worker_middleware: list[Any],
        worker: procrastinate_worker.Worker,
    ) -> None:
        self.worker = worker
        self.task = task
        self.is_async = inspect.iscoroutinefunction(task.func)
        self.task_middleware = task_middleware(task, self.is_async)
        self.worker_middleware = [
            mw for mw in worker_middleware if middleware.applies(mw, task)
        ]

    async def run(self, context: job_context.JobContext) -> Any:
        if self.worker_middleware:
            return await procrastinate_middleware.compose(
                self.worker_middleware,
                functools.partial(self._run_task, context),
                context,
                self.worker,
            )()
        return await self._run_task(context)

    async def _run_task(self, context: job_context.JobContext) -> Any:
        task = self.task
        job_args = [context] if task.pass_context else []
        kwargs = context.job.task_kwargs
        if self.is_async:

            async def run_async_task() -> Any:
                return await task(*job_args, **kwargs)

            call = run_async_task
            if self.task_middleware:
                call = procrastinate_middleware.compose(
                    self.task_middleware, run_async_task, context, self.worker
                )
            result = await call()
        else:

            def run_sync_task() -> Any:
                return task(*job_args, **kwargs)

            result = await sync_threads.run_sync(
                procrastinate_middleware.compose(
                    self.task_middleware, run_sync_task, context, self.worker
                )
            )
        # A sync task function may return an awaitable (procrastinate awaits
        # it too; its middlewares only wrapped the awaitable's creation).
        if inspect.isawaitable(result):
            result = await result
        return result
