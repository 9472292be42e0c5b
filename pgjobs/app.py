"""The pgjobs App: a procrastinate ``App`` with pgjobs' enqueue path and defaults.

``procrastinate --app=mymodule.app worker`` works unchanged on it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Concatenate, Literal, cast, overload

import procrastinate
import psycopg
from procrastinate import connector as procrastinate_connector
from procrastinate import jobs as procrastinate_jobs
from procrastinate import worker as procrastinate_worker
from procrastinate.job_context import JobContext

from pgjobs.admin import retention
from pgjobs.db import connector_info
from pgjobs.db.connector import Connector
from pgjobs.enqueueing import enqueue as enqueue_module
from pgjobs.enqueueing.enqueue import JobOptions, OnDuplicate
from pgjobs.enqueueing.job_manager import JobManager
from pgjobs.failures import breakers, stalled, timeouts
from pgjobs.failures.dead_letters import DeadLetterHook
from pgjobs.failures.retries import RetryValue
from pgjobs.monitoring import tracing
from pgjobs.scheduling import ticker
from pgjobs.settings import Settings, load_settings
from pgjobs.tasks import P, R, Task
from pgjobs.worker import event_loop, expiry, limit_waits, stats_pruning
from pgjobs.worker.worker import SideTask, StartStep, Worker

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
        connector: procrastinate_connector.BaseConnector | None = None,
        retry: RetryValue = None,
        timeout: float | None = None,
        on_dead_letter: DeadLetterHook | None = None,
    ) -> None:
        """``retry``/``timeout``: defaults for tasks that set none (see
        ``pgjobs.RetryPolicy``, ``pgjobs.failures.timeouts``);
        ``on_dead_letter``: called by the worker with each new ``DeadLetter``
        (default: a WARNING log).
        """
        self.settings = settings if settings is not None else load_settings()
        defaults: procrastinate.app.WorkerOptions = {
            "concurrency": self.settings.concurrency,
            "shutdown_graceful_timeout": self.settings.shutdown_grace,
            "update_heartbeat_interval": self.settings.heartbeat_interval,
            "stalled_worker_timeout": self.settings.stalled_after,
        }
        if self.settings.poll_interval is not None:
            defaults["fetch_job_polling_interval"] = self.settings.poll_interval
        super().__init__(
            connector=connector or Connector(self.settings),
            import_paths=import_paths,
            worker_defaults={**defaults, **(worker_defaults or {})},
            periodic_defaults=periodic_defaults,
        )
        self.job_manager = JobManager(self)
        #: Where ``task.defer()`` without ``connection=`` runs: a callable
        #: returning a connection (psycopg, SQLAlchemy, Django), or None for
        #: the App's pool. pgjobs.contrib.django sets it to Django's.
        self.default_defer_connection: Callable[[], Any | None] | None = None
        #: Extension points used by pgjobs' features (see pgjobs.worker.worker).
        self.worker_side_tasks: list[SideTask] = []
        self.worker_start_steps: list[StartStep] = []
        self.task_middleware_defaults: list[Any] = []
        self.worker_middleware_defaults: list[Any] = []
        # Failure handling: see pgjobs.retries, timeouts, breakers, stalled.
        self.default_retry = retry
        self.default_timeout = timeout
        self.on_dead_letter = on_dead_letter
        self.breakers: dict[str, breakers.Breaker] = {}
        if tracing.available:  # pgjobs[otel]: a span per attempt
            self.worker_middleware_defaults.append(tracing.tracing_middleware)
        self._breaker_middleware = breakers.breaker_middleware(self)
        self.worker_middleware_defaults += [
            self._breaker_middleware,
            timeouts.timeout_middleware,
        ]
        self.worker_side_tasks.append(stalled.rescuer(self, self.settings))
        # Flow control: waiting jobs past their start-by deadline end.
        self.worker_side_tasks.append(expiry.sweeper(self, self.settings))
        # Limits: stored before the first claim; a wake-up when a rate-held
        # job may start (see pgjobs.worker.limit_waits).
        self.worker_start_steps.append(
            ("storing the declared limits", limit_waits.sync_step(self))
        )
        self.worker_side_tasks.append(limit_waits.waker(self))
        # Monitoring: the periodic retention task, when PGJOBS_RETENTION_* is set,
        # and the task stats rollups pruned by every worker whatever is set.
        retention.install(self)
        self.worker_side_tasks.append(stats_pruning.pruner(self, self.settings))
        # Schedules: runtime schedules ticker (see pgjobs.scheduling.ticker).
        ticker.install(self)

    def with_connector(self, connector: procrastinate_connector.BaseConnector) -> App:
        """procrastinate's (deprecated) ``with_connector``, keeping pgjobs' App:
        the same tasks, settings, defaults and hooks on another connector."""
        app = App(
            settings=self.settings,
            import_paths=self.import_paths,
            worker_defaults=self.worker_defaults,
            periodic_defaults=self.periodic_defaults,
            connector=connector,
            retry=self.default_retry,
            timeout=self.default_timeout,
            on_dead_letter=self.on_dead_letter,
        )
        app.tasks = self.tasks
        app.periodic_registry = self.periodic_registry
        app.breakers = self.breakers
        return app

    def run_worker(self, **kwargs: Any) -> None:
        """procrastinate's ``run_worker`` on the loop ``PGJOBS_EVENT_LOOP``
        chooses (uvloop when installed: see pgjobs.worker.event_loop).

        The worker owns this process, so it also freezes the collector's
        view of what is loaded at its start (``freeze_gc``); a worker run
        inside an application (``run_worker_async``) leaves the host's
        collector alone unless given ``freeze_gc=True``."""
        loop = event_loop.name(self.settings.event_loop)
        kwargs.setdefault("freeze_gc", True)

        async def main() -> None:
            logger.info(
                f"Worker event loop: {loop}",
                extra={"action": "event_loop", "event_loop": loop},
            )
            async with self.open_async():
                await self.run_worker_async(**kwargs)

        event_loop.run(main, loop)

    def _worker(self, **kwargs: Any) -> procrastinate_worker.Worker:
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
        if connector_info.in_memory(self.connector):
            # procrastinate's testing connector: procrastinate's own worker
            # (pgjobs' batch claims, side tasks and breakers are SQL).
            options.pop("max_interruptions", None)
            options.pop("freeze_gc", None)
            options["worker_middleware"].remove(self._breaker_middleware)
            return procrastinate_worker.Worker(app=self, **options)
        options.setdefault("max_interruptions", self.settings.max_interruptions)
        return Worker(
            app=self,
            side_tasks=self.worker_side_tasks,
            start_steps=self.worker_start_steps,
            prefetch=prefetch,
            **options,
        )

    # -- task declaration -------------------------------------------------

    # Typed as procrastinate's App.task: the task keeps its function's
    # parameters (ParamSpec), so mypy checks task.defer()/task.enqueue().
    @overload
    def task(
        self,
        _func: None = None,
        *,
        pass_context: Literal[False] = False,
        **options: Any,
    ) -> Callable[[Callable[P, R]], Task[P, R, P]]: ...

    @overload
    def task(
        self,
        _func: None = None,
        *,
        pass_context: Literal[True],
        **options: Any,
    ) -> Callable[
        [Callable[Concatenate[JobContext, P], R]],
        Task[Concatenate[JobContext, P], R, P],
    ]: ...

    @overload
    def task(self, _func: Callable[P, R], **options: Any) -> Task[P, R, P]: ...

    def task(self, _func: Callable[..., Any] | None = None, **options: Any) -> Any:
        """Declare a task, as procrastinate's ``App.task``; arguments are typed.

        Options are procrastinate's (name, aliases, retry, pass_context, queue,
        priority, lock, queueing_lock, task_middleware) plus pgjobs' own (see
        ``pgjobs.tasks.Task``): retry, timeout, breaker, and the limits
        concurrency_limit, rate_limit, limit_key, key_concurrency_limit,
        key_rate_limit (``pgjobs.worker.limits``). A task without retry
        or timeout gets the App's.
        """
        options.setdefault("queue", procrastinate_jobs.DEFAULT_QUEUE)
        options.setdefault("retry", self.default_retry)
        options.setdefault("timeout", self.default_timeout)

        def wrap(func: Callable[..., Any]) -> Task[Any, Any, Any]:
            task: Task[Any, Any, Any] = Task(func, blueprint=self, **options)
            self._register_task(task)
            return cast(
                "Task[Any, Any, Any]", functools.update_wrapper(task, func, updated=())
            )

        return wrap if _func is None else wrap(_func)

    def breaker(
        self, name: str | breakers.Breaker, **config: Any
    ) -> breakers.BoundBreaker:
        """A circuit breaker shared by all workers: ``app.breaker("crm").guard()``.

        ``config`` (failure_threshold, recovery_window, success_threshold,
        trip_on, ignore) sets the breaker's configuration in this App; tasks
        declared with ``breaker="crm"`` use it too.
        """
        return breakers.BoundBreaker(
            self, breakers.register(self.breakers, name, **config)
        )

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
        timedelta), run_at (aware datetime), and a start-by deadline:
        expires_at (aware datetime) or expires_in (seconds or timedelta); a
        job not started by then never starts (README "Flow control").
        Returns the job id, or ``None`` for an ignored duplicate.

        Behind a transaction pooler (PgBouncer ``pool_mode = transaction``),
        ``conn`` must not use client-side prepared statements: open it with
        ``prepare_threshold=None`` (SQLAlchemy: ``connect_args=
        {"prepare_threshold": None}``); see README "Behind PgBouncer".
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
        conn: psycopg.AsyncConnection[Any] | Any,
        task: procrastinate.tasks.Task[Any, Any, Any] | str,
        payload: Mapping[str, Any] | None = None,
        /,
        *,
        on_duplicate: OnDuplicate = "raise",
        **options: Any,
    ) -> int | None:
        """``enqueue`` on a psycopg ``AsyncConnection``, or a SQLAlchemy
        ``AsyncSession``/``AsyncConnection`` (``postgresql+psycopg://``)."""
        ids = await enqueue_module.enqueue_many_async(
            conn, self, task, [payload or {}], JobOptions(**options), on_duplicate
        )
        return ids[0]

    async def enqueue_many_async(
        self,
        conn: psycopg.AsyncConnection[Any] | Any,
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
