"""pgjobs tasks: procrastinate tasks whose arguments are typed and validated."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from typing import Any, Generic, ParamSpec, Protocol, TypeVar, cast

from procrastinate import exceptions as procrastinate_exceptions
from procrastinate import jobs as procrastinate_jobs
from procrastinate import retry as procrastinate_retry
from procrastinate import tasks as procrastinate_tasks

from pgjobs.enqueueing import deadlines
from pgjobs.enqueueing.payloads import PayloadSchema
from pgjobs.errors import InvalidJobOptions
from pgjobs.failures import error_history, retries
from pgjobs.failures.breakers import Breaker, BreakerOpen
from pgjobs.worker import limits as limits_module


class Enqueuer(Protocol):
    """What a task's typed ``enqueue`` needs of its App (``pgjobs.App``)."""

    def enqueue(
        self, conn: Any, task: Any, payload: Mapping[str, Any] | None = None, /
    ) -> int | None: ...

    async def enqueue_async(
        self, conn: Any, task: Any, payload: Mapping[str, Any] | None = None, /
    ) -> int | None: ...


#: The function's parameters, its return type, and what ``defer``/``enqueue``
#: take (the parameters without the job context): procrastinate's typing.
P = ParamSpec("P")
R = TypeVar("R")
Args = ParamSpec("Args")


class Task(procrastinate_tasks.Task[P, R, Args], Generic[P, R, Args]):
    """A procrastinate ``Task`` with a payload schema from its type hints.

    pgjobs options: ``retry`` (a ``pgjobs.RetryPolicy``, or procrastinate's
    forms), ``timeout`` (seconds per attempt, see ``pgjobs.failures.timeouts``) and
    ``breaker`` (a breaker name or ``pgjobs.Breaker``, see ``pgjobs.breakers``),
    and fleet-wide limits (see ``pgjobs.worker.limits``): ``concurrency_limit``,
    ``rate_limit`` ("10/s"), and per key: ``limit_key`` (an argument's name)
    with ``key_concurrency_limit`` / ``key_rate_limit``.

    Typed like procrastinate's: ``task.defer(...)``, ``task.enqueue(conn, ...)``
    and ``await task.enqueue_async(conn, ...)`` take the function's own
    parameters, so mypy flags a wrong or missing argument.
    """

    def __init__(
        self,
        func: Callable[P, R],
        *,
        retry: retries.RetryValue = None,
        timeout: float | None = None,
        breaker: str | Breaker | None = None,
        concurrency_limit: int | None = None,
        rate_limit: str | None = None,
        limit_key: str | None = None,
        key_concurrency_limit: int | None = None,
        key_rate_limit: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(func, retry=retry or False, **kwargs)
        #: Fleet-wide limits, enforced by the claim (pgjobs.worker.limits).
        self.limits: tuple[limits_module.Limit, ...] = limits_module.declare(
            self.name,
            func,
            concurrency_limit=concurrency_limit,
            rate_limit=rate_limit,
            limit_key=limit_key,
            key_concurrency_limit=key_concurrency_limit,
            key_rate_limit=key_rate_limit,
        )
        if timeout is not None and timeout <= 0:
            raise InvalidJobOptions(f"task {self.name!r}: timeout must be > 0 seconds")
        self.timeout: float | None = timeout
        self.breaker: str | Breaker | None = breaker
        self.payload = PayloadSchema(
            func, task_name=self.name, skip_first=self.pass_context
        )

    def configure(self, **options: Any) -> procrastinate_jobs.JobDeferrer:
        """procrastinate's ``configure``, plus pgjobs' start-by deadline:
        ``expires_at`` (aware datetime) or ``expires_in`` (seconds or
        timedelta), as ``app.enqueue`` takes them."""
        expires_at = options.pop("expires_at", None)
        expires_in = options.pop("expires_in", None)
        # procrastinate turns schedule_in into a past schedule_at without a
        # word; app.enqueue refuses a negative delay, and so does this.
        schedule_in = options.get("schedule_in")
        if schedule_in is not None:
            try:
                delay = datetime.timedelta(**schedule_in)
            except TypeError as exc:
                raise InvalidJobOptions(f"invalid schedule_in: {exc}") from None
            if delay < datetime.timedelta(0):
                raise InvalidJobOptions("schedule_in must not be negative")
        deferrer = super().configure(**options)
        deadline = deadlines.deadline(expires_at, expires_in, deferrer.job.scheduled_at)
        if deadline is None:
            return deferrer
        return deadlines.DeadlineDeferrer(deferrer, deadline)

    def get_retry_exception(
        self, exception: BaseException, job: procrastinate_jobs.Job
    ) -> procrastinate_exceptions.JobRetry | None:
        if isinstance(exception, BreakerOpen):
            return procrastinate_exceptions.JobRetry(
                procrastinate_retry.RetryDecision(retry_at=exception.retry_at)
            )
        return retries.decide(self.retry_strategy, exception, job)

    def attempt_failure(self, exception: BaseException) -> error_history.Failure:
        """What the error history records of an attempt that raised
        ``exception`` (the worker hands it to the JobManager, which writes
        it with the job's new status)."""
        if isinstance(exception, BreakerOpen):
            return error_history.Failure(
                error_type=type(exception).__qualname__,
                message=str(exception),
                traceback=None,
                reschedule_at=exception.retry_at,
            )
        return error_history.describe(exception)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        # The worker calls the task with the stored JSON: hand the function
        # validated values (pydantic models, datetimes...) instead.
        func = cast(Callable[..., R], self.func)
        return func(*args, **self.payload.load(kwargs))

    # -- typed transactional enqueue ---------------------------------------

    def _app(self) -> Enqueuer:
        # The blueprint a pgjobs task is declared on is a pgjobs App.
        return cast(Enqueuer, self.blueprint)

    def enqueue(self, conn: Any, /, *args: Args.args, **kwargs: Args.kwargs) -> int:
        """``app.enqueue(conn, task, kwargs)`` with the arguments checked by
        mypy: one job in ``conn``'s transaction (psycopg, SQLAlchemy, Django).
        Options (queue, delay...): ``app.enqueue``."""
        if args:
            raise InvalidJobOptions(f"task {self.name!r}: pass arguments by keyword")
        job_id = self._app().enqueue(conn, self, kwargs)
        assert job_id is not None  # a duplicate raises AlreadyEnqueued
        return job_id

    async def enqueue_async(
        self, conn: Any, /, *args: Args.args, **kwargs: Args.kwargs
    ) -> int:
        """``enqueue`` on a psycopg ``AsyncConnection`` or SQLAlchemy
        ``AsyncSession``/``AsyncConnection``."""
        if args:
            raise InvalidJobOptions(f"task {self.name!r}: pass arguments by keyword")
        job_id = await self._app().enqueue_async(conn, self, kwargs)
        assert job_id is not None
        return job_id
