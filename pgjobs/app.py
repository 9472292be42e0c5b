"""The pgjobs App: a procrastinate ``App`` with pgjobs' enqueue path and defaults.

``procrastinate --app=mymodule.app worker`` works unchanged on it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast, overload

import procrastinate
import psycopg
from procrastinate import jobs as procrastinate_jobs

from pgjobs import breakers, event_loop, retention, schedules, stalled, timeouts
from pgjobs import enqueue as enqueue_module
from pgjobs.connector import Connector
from pgjobs.dead_letters import DeadLetterHook
from pgjobs.enqueue import JobOptions, OnDuplicate
from pgjobs.job_manager import JobManager
from pgjobs.job_worker import SideTask, Worker
from pgjobs.retries import RetryValue
from pgjobs.settings import Settings, load_settings
from pgjobs.tasks import Task

logger = logging.getLogger(__name__)


class App(procrastinate.App):
    """Define tasks with ``@app.task``; enqueue with ``app.enqueue(conn, ...)``."""

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        import_paths: Iterable[str] | None = None,
        worker_defaults: procrastinate.app.WorkerOptions | None = None,
        periodic_defaults: dict[str, Any] | None = None,
        connector: Connector | None = None,
        retry: RetryValue = None,
        timeout: float | None = None,
        on_dead_letter: DeadLetterHook | None = None,
    ) -> None:
        """``retry``/``timeout``: defaults for tasks that set none (see
        ``pgjobs.RetryPolicy``, ``pgjobs.timeouts``); ``on_dead_letter``: called
        by the worker with each new ``DeadLetter`` (default: a WARNING log).
        """
        self.settings = settings if settings is not None else load_settings()
        defaults: procrastinate.app.WorkerOptions = {
            "concurrency": self.settings.concurrency,
            "shutdown_graceful_timeout": self.settings.shutdown_grace,
            "update_heartbeat_interval": self.settings.heartbeat_interval,
            "stalled_worker_timeout": self.settings.stalled_after,
        }
        super().__init__(
            connector=connector or Connector(self.settings),
            import_paths=import_paths,
            worker_defaults={**defaults, **(worker_defaults or {})},
            periodic_defaults=periodic_defaults,
        )
        self.job_manager = JobManager(self)
        #: Extension points used by pgjobs' features (see pgjobs.job_worker).
        self.worker_side_tasks: list[SideTask] = []
        self.task_middleware_defaults: list[Any] = []
        self.worker_middleware_defaults: list[Any] = []
        # Failure handling: see pgjobs.retries, timeouts, breakers, stalled.
        self.default_retry = retry
        self.default_timeout = timeout
        self.on_dead_letter = on_dead_letter
        self.breakers: dict[str, breakers.Breaker] = {}
        self.worker_middleware_defaults += [
            breakers.breaker_middleware,
            timeouts.timeout_middleware,
        ]
        self.worker_side_tasks.append(stalled.stalled_job_rescuer)
        # Monitoring: the periodic retention task, when PGJOBS_RETENTION_* is set.
        retention.install(self)
        # Schedules: runtime schedules ticker (see pgjobs.schedules).
        schedules.install(self)

    def run_worker(self, **kwargs: Any) -> None:
        """procrastinate's ``run_worker`` on the loop ``PGJOBS_EVENT_LOOP``
        chooses (uvloop when installed: see pgjobs.event_loop)."""
        loop = event_loop.name(self.settings.event_loop)

        async def main() -> None:
            logger.info(
                f"Worker event loop: {loop}",
                extra={"action": "event_loop", "event_loop": loop},
            )
            async with self.open_async():
                await self.run_worker_async(**kwargs)

        event_loop.run(main, loop)

    def _worker(self, **kwargs: Any) -> Worker:
        options: dict[str, Any] = {**self.worker_defaults, **kwargs}
        options["task_middleware"] = [
            *self.task_middleware_defaults,
            *(options.get("task_middleware") or []),
        ]
        options["worker_middleware"] = [
            *self.worker_middleware_defaults,
            *(options.get("worker_middleware") or []),
        ]
        prefetch = options.pop("prefetch", self.settings.prefetch)
        return Worker(
            app=self, side_tasks=self.worker_side_tasks, prefetch=prefetch, **options
        )

    # -- task declaration -------------------------------------------------

    @overload
    def task(
        self, _func: None = None, **options: Any
    ) -> Callable[[Callable[..., Any]], Task]: ...

    @overload
    def task(self, _func: Callable[..., Any], **options: Any) -> Task: ...

    def task(self, _func: Callable[..., Any] | None = None, **options: Any) -> Any:
        """Declare a task, as procrastinate's ``App.task``; arguments are typed.

        Options are procrastinate's (name, aliases, retry, pass_context, queue,
        priority, lock, queueing_lock, task_middleware) plus pgjobs' own (see
        ``pgjobs.tasks.Task``): retry, timeout, breaker. A task without retry
        or timeout gets the App's.
        """
        options.setdefault("queue", procrastinate_jobs.DEFAULT_QUEUE)
        options.setdefault("retry", self.default_retry)
        options.setdefault("timeout", self.default_timeout)

        def wrap(func: Callable[..., Any]) -> Task:
            task = Task(func, blueprint=self, **options)
            self._register_task(task)
            return cast(Task, functools.update_wrapper(task, func, updated=()))

        return wrap if _func is None else wrap(_func)

    def breaker(
        self, name: str | breakers.Breaker, **config: Any
    ) -> breakers.BoundBreaker:
        """A circuit breaker shared by all workers: ``app.breaker("crm").guard()``.

        ``config`` (failure_threshold, recovery_window, success_threshold,
        trip_on, ignore) sets the breaker's configuration in this App; tasks
        declared with ``breaker="crm"`` use it too.
        """
        return breakers.BoundBreaker(self, breakers.register(self, name, **config))

    # -- transactional enqueue --------------------------------------------

    def enqueue(
        self,
        conn: Any,
        task: procrastinate.tasks.Task[Any, Any, Any] | str,
        payload: Mapping[str, Any] | None = None,
        /,
        *,
        on_duplicate: OnDuplicate = "raise",
        **options: Any,
    ) -> int | None:
        """Insert one job on ``conn`` inside the caller's transaction.

        ``options``: queue, priority, lock, queueing_lock, delay (seconds or
        timedelta), run_at (aware datetime). Returns the job id, or ``None`` for
        an ignored duplicate.
        """
        return enqueue_module.enqueue_many(
            conn, self, task, [payload or {}], JobOptions(**options), on_duplicate
        )[0]

    def enqueue_many(
        self,
        conn: Any,
        task: procrastinate.tasks.Task[Any, Any, Any] | str,
        payloads: Iterable[Mapping[str, Any]],
        /,
        *,
        on_duplicate: OnDuplicate = "raise",
        **options: Any,
    ) -> list[int | None]:
        """Insert one job per payload on ``conn`` in a single round trip."""
        return enqueue_module.enqueue_many(
            conn, self, task, payloads, JobOptions(**options), on_duplicate
        )

    async def enqueue_async(
        self,
        conn: psycopg.AsyncConnection[Any],
        task: procrastinate.tasks.Task[Any, Any, Any] | str,
        payload: Mapping[str, Any] | None = None,
        /,
        *,
        on_duplicate: OnDuplicate = "raise",
        **options: Any,
    ) -> int | None:
        """``enqueue`` on a psycopg ``AsyncConnection``."""
        ids = await enqueue_module.enqueue_many_async(
            conn, self, task, [payload or {}], JobOptions(**options), on_duplicate
        )
        return ids[0]

    async def enqueue_many_async(
        self,
        conn: psycopg.AsyncConnection[Any],
        task: procrastinate.tasks.Task[Any, Any, Any] | str,
        payloads: Iterable[Mapping[str, Any]],
        /,
        *,
        on_duplicate: OnDuplicate = "raise",
        **options: Any,
    ) -> list[int | None]:
        """``enqueue_many`` on a psycopg ``AsyncConnection``."""
        return await enqueue_module.enqueue_many_async(
            conn, self, task, payloads, JobOptions(**options), on_duplicate
        )
