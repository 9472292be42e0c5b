"""pgjobs tasks: procrastinate tasks whose arguments are typed and validated."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from procrastinate import exceptions as procrastinate_exceptions
from procrastinate import jobs as procrastinate_jobs
from procrastinate import retry as procrastinate_retry
from procrastinate import tasks as procrastinate_tasks

from pgjobs import error_history, retries
from pgjobs.breakers import Breaker, BreakerOpen
from pgjobs.errors import InvalidJobOptions
from pgjobs.payloads import PayloadSchema


class Task(procrastinate_tasks.Task):  # type: ignore[type-arg]
    """A procrastinate ``Task`` with a payload schema from its type hints.

    pgjobs options: ``retry`` (a ``pgjobs.RetryPolicy``, or procrastinate's
    forms), ``timeout`` (seconds per attempt, see ``pgjobs.timeouts``) and
    ``breaker`` (a breaker name or ``pgjobs.Breaker``, see ``pgjobs.breakers``).
    """

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        retry: retries.RetryValue = None,
        timeout: float | None = None,
        breaker: str | Breaker | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(func, retry=retry or False, **kwargs)
        if timeout is not None and timeout <= 0:
            raise InvalidJobOptions(f"task {self.name!r}: timeout must be > 0 seconds")
        self.timeout: float | None = timeout
        self.breaker: str | Breaker | None = breaker
        self.payload = PayloadSchema(
            func, task_name=self.name, skip_first=self.pass_context
        )

    def get_retry_exception(
        self, exception: BaseException, job: procrastinate_jobs.Job
    ) -> procrastinate_exceptions.JobRetry | None:
        # Called by the worker for every failed attempt: note the failure for
        # the JobManager, which writes it with the job's new status.
        if isinstance(exception, BreakerOpen):
            error_history.remember(
                job,
                error_history.Failure(
                    error_type=type(exception).__qualname__,
                    message=str(exception),
                    traceback=None,
                    reschedule_at=exception.retry_at,
                ),
            )
            return procrastinate_exceptions.JobRetry(
                procrastinate_retry.RetryDecision(retry_at=exception.retry_at)
            )
        error_history.remember(job, error_history.describe(exception))
        return retries.decide(self.retry_strategy, exception, job)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # The worker calls the task with the stored JSON: hand the function
        # validated values (pydantic models, datetimes...) instead.
        return self.func(*args, **self.payload.load(kwargs))
