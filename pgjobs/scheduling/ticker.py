"""The worker side of schedules.

Every worker looks for due runtime schedules every
``PGJOBS_SCHEDULE_POLL_INTERVAL`` seconds (default 1) and claims a due tick
with one compare-and-set statement, so exactly one worker enqueues it.
Missed runs (ticks that came while no worker ran) follow the schedule's
``missed_runs`` policy: ``skip`` (default) drops them, ``once`` enqueues one
catch-up run, ``all`` enqueues each of them, at most ``max_catch_up``
(default 100, newest kept). A tick is *missed* when it is found more than
``late_window()`` after its time; ticks found sooner always run. Each worker
also records the App's code-declared ``@app.periodic`` tasks for
``pgjobs.periodic_health``.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from procrastinate import connector as procrastinate_connector
from procrastinate import periodic as procrastinate_periodic

from pgjobs.db import queries
from pgjobs.enqueueing import enqueue
from pgjobs.scheduling.cron import Timing
from pgjobs.settings import Settings
from pgjobs.worker import outages

logger = logging.getLogger("pgjobs.schedules")

#: Due schedules handled per poll by one worker.
DUE_BATCH = 100

SideTask = Callable[[Any], Awaitable[None]]


class ScheduleHost(enqueue.TaskRegistry, Protocol):
    """What schedules need of their App (``pgjobs.App``): its tasks, the
    database, settings, procrastinate's periodic tasks and scheduler, and the
    worker side tasks it starts."""

    @property
    def connector(self) -> procrastinate_connector.BaseConnector: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def periodic_registry(self) -> procrastinate_periodic.PeriodicRegistry: ...

    @property
    def periodic(self) -> Callable[..., Any]: ...

    @property
    def worker_side_tasks(self) -> list[SideTask]: ...


logger = logging.getLogger("pgjobs.schedules")


@dataclass(frozen=True)
class EnqueuedTick:
    """A tick a worker enqueued (``run_due_schedules``)."""

    schedule: str
    tick_at: datetime.datetime
    trigger: str
    job_id: int | None


def late_window(settings: Settings) -> datetime.timedelta:
    """How late a tick may be found and still count as on time, not missed."""
    return datetime.timedelta(seconds=max(5.0, 3 * settings.schedule_poll_interval))


def plan_ticks(
    timing: Timing,
    next_run_at: datetime.datetime,
    now: datetime.datetime,
    *,
    missed_runs: str,
    max_catch_up: int,
    window: datetime.timedelta,
) -> list[tuple[datetime.datetime, str]]:
    """The ticks to enqueue for a schedule due since ``next_run_at``, oldest
    first, each with its trigger ('tick' or 'catch_up').

    Walks back from ``now`` so a schedule stopped for a year costs no more
    than ``max_catch_up`` steps.
    """
    on_time: list[datetime.datetime] = []
    missed: list[datetime.datetime] = []
    wanted = {"skip": 0, "once": 1, "all": max_catch_up}[missed_runs]
    tick = timing.at_or_before(now)
    while tick is not None and tick >= next_run_at:
        if now - tick <= window:
            on_time.append(tick)
        elif len(missed) < wanted:
            missed.append(tick)
        else:
            break
        tick = timing.at_or_before(tick - datetime.timedelta(microseconds=1))
    plan = [(t, "catch_up") for t in missed] + [(t, "tick") for t in on_time]
    return sorted(plan)


async def run_due_schedules(app: ScheduleHost) -> list[EnqueuedTick]:
    """Enqueue the due ticks of every due schedule (what each worker does
    every poll interval). Safe to run from any number of workers at once."""
    connector = app.connector
    window = late_window(app.settings)
    rows = await connector.execute_query_all_async(
        query=queries.query("schedules_due"), limit=DUE_BATCH
    )
    enqueued: list[EnqueuedTick] = []
    for row in rows:
        timing = Timing(cron=row["cron"], interval_seconds=row["interval_seconds"])
        now = row["db_now"]
        plan = plan_ticks(
            timing,
            row["next_run_at"],
            now,
            missed_runs=row["missed_runs"],
            max_catch_up=row["max_catch_up"],
            window=window,
        )
        claimed = await connector.execute_query_all_async(
            query=queries.query("schedules_claim_ticks"),
            schedule_id=row["id"],
            expected_next_run_at=row["next_run_at"],
            ticks=[tick for tick, _ in plan],
            triggers=[trigger for _, trigger in plan],
            next_run_at=timing.next_after(now),
        )
        for tick in claimed:
            enqueued.append(EnqueuedTick(schedule=row["name"], **tick))
            logger.info(
                f"Schedule {row['name']} enqueued job {tick['job_id']} for "
                f"{tick['tick_at'].isoformat()} ({tick['trigger']})",
                extra={
                    "action": "schedule_tick_enqueued",
                    "schedule": row["name"],
                    "job_id": tick["job_id"],
                    "tick_at": tick["tick_at"].isoformat(),
                    "trigger": tick["trigger"],
                },
            )
    return enqueued


def periodic_task_name(task_name: str, periodic_id: str) -> str:
    """A code-declared periodic task's name in ``pgjobs.periodic_health``."""
    return periodic_id or task_name


async def register_periodic_tasks(app: ScheduleHost) -> None:
    """Record the App's ``@app.periodic`` tasks and their expected interval."""
    for periodic_task in app.periodic_registry.periodic_tasks.values():
        timing = Timing(cron=periodic_task.cron)
        task_name = periodic_task.task.name
        await app.connector.execute_query_async(
            query=queries.query("schedules_register_periodic_task"),
            schedule_name=periodic_task_name(task_name, periodic_task.periodic_id),
            task_name=task_name,
            periodic_id=periodic_task.periodic_id,
            cron=periodic_task.cron,
            expected_interval=timing.expected_interval(),
        )


def schedule_ticker(app: ScheduleHost) -> SideTask:
    """The worker side task that registers periodic tasks, then enqueues due
    ticks of runtime schedules every ``PGJOBS_SCHEDULE_POLL_INTERVAL`` s."""

    async def tick(worker: Any) -> None:
        await _tick(app)

    return tick


async def _tick(app: ScheduleHost) -> None:
    try:
        await register_periodic_tasks(app)
    except Exception as exc:
        if outages.is_connection_error(exc):
            raise  # the worker retries the side task (one log line per outage)
        logger.exception(
            "registering periodic tasks failed; their health is not tracked",
            extra={"action": "periodic_tasks_register_error"},
        )
    while True:
        try:
            await run_due_schedules(app)
        except Exception as exc:
            if outages.is_connection_error(exc):
                raise
            logger.exception(
                "enqueueing due schedules failed; trying again",
                extra={"action": "schedule_tick_error"},
            )
        await asyncio.sleep(app.settings.schedule_poll_interval)


def install(app: ScheduleHost) -> None:
    """Give every worker of ``app`` the schedule ticker (``pgjobs.App`` does)."""
    app.worker_side_tasks.append(schedule_ticker(app))
