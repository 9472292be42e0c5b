"""Code-declared schedules beside procrastinate's ``@app.periodic``.

- ``every(app, 60)`` turns an interval into a cron expression for
  procrastinate's scheduler (each tick runs once across all workers);
- ``after_start(app, delay=5)`` runs a task once, ``delay`` seconds after the
  workers start: one delayed job per deployment (see ``claim_startup_run``).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pgjobs.db import queries
from pgjobs.enqueueing import enqueue
from pgjobs.errors import (
    InvalidJobOptions,
)
from pgjobs.scheduling.cron import interval_as_cron
from pgjobs.scheduling.ticker import ScheduleHost
from pgjobs.worker import outages

if TYPE_CHECKING:
    from pgjobs.tasks import Task

#: A decorator given a task returns it with its typing (see pgjobs.tasks).
AnyTask = TypeVar("AnyTask", bound="Task[Any, Any, Any]")

logger = logging.getLogger("pgjobs.schedules")


class _Started(Protocol):
    """The worker a side task runs beside, once it has registered."""

    @property
    def worker_id(self) -> int | None: ...


def every(
    app: ScheduleHost, seconds: int, *, periodic_id: str = "", **configure_kwargs: Any
) -> Callable[[AnyTask], AnyTask]:
    """Run a task every ``seconds`` through procrastinate's scheduler.

    The interval becomes a cron expression (every 15 s: ``* * * * * */15``,
    every 2 h: ``0 */2 * * *``), so it must divide a minute, an hour or a
    day; the task receives ``timestamp`` like any periodic task. Pass
    ``queueing_lock=...`` to skip a tick while the previous job still waits.
    """
    cron = interval_as_cron(seconds)

    def wrap(task: AnyTask) -> AnyTask:
        app.periodic(cron=cron, periodic_id=periodic_id, **configure_kwargs)(task)
        return task

    return wrap


async def claim_startup_run(
    app: ScheduleHost,
    task: Task[Any, Any, Any],
    *,
    name: str,
    worker_id: int,
    delay: float,
    args: Mapping[str, Any] | None = None,
) -> int | None:
    """Enqueue ``task`` ``delay`` seconds from now if this worker is the first
    of its deployment to claim ``name``; the job id, or None.

    A deployment is ``PGJOBS_DEPLOYMENT_ID`` when set (once per value).
    Unset, it is a continuous period with at least one live worker: a worker
    starting while a worker of the last claim (or one that joined it since)
    is alive joins that deployment; otherwise it claims a new run.
    """
    jobs = enqueue.build_jobs(task, [args or {}], enqueue.JobOptions(delay=delay))
    row: dict[str, Any] = await app.connector.execute_query_one_async(
        query=queries.query("schedules_claim_startup_run"),
        schedule_name=name,
        deployment_id=app.settings.deployment_id,
        worker_id=worker_id,
        alive_within=datetime.timedelta(seconds=app.settings.stalled_after),
        jobs=jobs,
    )
    if row["claimed"] and row["job_id"] is not None:
        await app.connector.execute_query_async(
            query=queries.query("schedules_note_startup_job"),
            schedule_name=name,
            job_id=row["job_id"],
        )
        logger.info(
            f"Run-once-after-start {name}: job {row['job_id']} in {delay} s",
            extra={
                "action": "startup_run_enqueued",
                "startup_run": name,
                "job_id": row["job_id"],
            },
        )
    job_id: int | None = row["job_id"]
    return job_id


def after_start(
    app: ScheduleHost,
    *,
    delay: float = 5.0,
    name: str | None = None,
    args: Mapping[str, Any] | None = None,
) -> Callable[[AnyTask], AnyTask]:
    """Run a task once, ``delay`` seconds after the workers start, once per
    deployment (not once per worker process; see ``claim_startup_run``).

    It is a delayed job enqueued by the first worker to start.
    """
    if delay < 0:
        raise InvalidJobOptions("delay must not be negative")

    def wrap(task: AnyTask) -> AnyTask:
        task.payload.dump(args or {})  # refuse bad args at import time
        run_name = name or task.name

        async def run_after_start(worker: _Started) -> None:
            assert worker.worker_id is not None
            try:
                await claim_startup_run(
                    app,
                    task,
                    name=run_name,
                    worker_id=worker.worker_id,
                    delay=delay,
                    args=args,
                )
            except Exception as exc:
                if outages.is_connection_error(exc):
                    raise  # retried: the claim is idempotent
                logger.exception(
                    f"run-once-after-start {run_name} could not be enqueued",
                    extra={"action": "startup_run_error", "startup_run": run_name},
                )
            # A side task that returns would end the worker's side-task watch.
            await asyncio.Event().wait()

        run_after_start.__name__ = f"after_start:{run_name}"
        app.worker_side_tasks.append(run_after_start)
        return task

    return wrap
