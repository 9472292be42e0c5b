"""Schedules: runtime schedules in Postgres, interval and after-start tasks,
and periodic health.

Three ways to run something periodically:

- **code-declared cron** — ``@app.periodic(cron="0 0 * * *")`` (procrastinate's
  scheduler; each tick runs once across all workers), and ``every(app, 60)``,
  which turns an interval into such a cron expression;
- **runtime schedules** — rows of ``pgjobs.schedules`` added, changed, paused,
  resumed, removed and run on demand from Python (the functions below) or
  ``pgjobs schedules ...``. Every worker looks for due schedules every
  ``PGJOBS_SCHEDULE_POLL_INTERVAL`` seconds (default 1) and claims a due tick
  with one compare-and-set statement, so exactly one worker enqueues it;
- **run once after start** — ``after_start(app, delay=5)``: one delayed job
  per deployment (see ``claim_startup_run``).

Missed runs (ticks that came while no worker ran) of a runtime schedule
follow its ``missed_runs`` policy: ``skip`` (default) drops them, ``once``
enqueues one catch-up run, ``all`` enqueues each of them, at most
``max_catch_up`` (default 100, newest kept). A tick is *missed* when it is
found more than ``late_window()`` after its time; ticks found sooner always
run.

``pgjobs.periodic_health`` (a SQL view; ``periodic_health()`` here) shows each
schedule and code-declared periodic task with its expected interval, last
enqueue, last success and failure, and whether it is overdue: no success
within expected interval + grace (greatest of 60 s and 10 % of the interval).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Final, Literal, get_args

import procrastinate.tasks
import psycopg
from psycopg.types.json import Jsonb

from pgjobs import database, enqueue, queries, resilience
from pgjobs.cron import Timing, interval_as_cron
from pgjobs.errors import (
    InvalidJobOptions,
    InvalidSchedule,
    ScheduleExists,
    ScheduleNotFound,
)
from pgjobs.settings import Settings

if TYPE_CHECKING:
    from pgjobs.app import App
    from pgjobs.job_worker import Worker
    from pgjobs.tasks import Task

logger = logging.getLogger(__name__)

MissedRuns = Literal["skip", "once", "all"]
MISSED_RUNS: Final = get_args(MissedRuns)
Target = Settings | str | psycopg.Connection[Any]
TaskRef = procrastinate.tasks.Task[Any, Any, Any] | str

#: Due schedules handled per poll by one worker.
DUE_BATCH = 100


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


#: "Leave as it is" for ``update_schedule`` options that may be None.
UNSET: Final = _Unset()


@dataclass(frozen=True)
class Schedule:
    """One row of ``pgjobs.schedules``."""

    id: int
    name: str
    task_name: str
    cron: str | None
    interval_seconds: int | None
    args: dict[str, Any]
    queue_name: str
    priority: int
    queueing_lock: str | None
    paused: bool
    missed_runs: str
    max_catch_up: int
    expected_interval: datetime.timedelta
    expected_interval_override: datetime.timedelta | None
    next_run_at: datetime.datetime
    active_since: datetime.datetime
    last_enqueued_at: datetime.datetime | None
    last_job_id: int | None
    last_success_at: datetime.datetime | None
    last_failure_at: datetime.datetime | None
    last_error: str | None
    created_at: datetime.datetime
    updated_at: datetime.datetime

    @property
    def timing(self) -> Timing:
        return Timing(cron=self.cron, interval_seconds=self.interval_seconds)

    @property
    def schedule(self) -> str:
        """The cron expression, or "every N s"."""
        return self.timing.describe()


@dataclass(frozen=True)
class ScheduleRun:
    """One enqueued tick of a schedule (``pgjobs.schedule_runs``)."""

    tick_at: datetime.datetime
    #: 'tick' (on time), 'catch_up' (missed-run policy) or 'manual' (run now).
    trigger: str
    #: None when the schedule's queueing lock was held by a waiting job.
    job_id: int | None
    enqueued_at: datetime.datetime
    status: str | None
    finished_at: datetime.datetime | None


@dataclass(frozen=True)
class ScheduleRunNow:
    schedule: str
    job_id: int | None
    tick_at: datetime.datetime


@dataclass(frozen=True)
class EnqueuedTick:
    """A tick a worker enqueued (``run_due_schedules``)."""

    schedule: str
    tick_at: datetime.datetime
    trigger: str
    job_id: int | None


@dataclass(frozen=True)
class PeriodicHealth:
    """One row of the ``pgjobs.periodic_health`` view."""

    name: str
    task_name: str
    #: 'schedule' (runtime) or 'code' (@app.periodic).
    kind: str
    expected_interval: datetime.timedelta | None
    last_enqueued_at: datetime.datetime | None
    last_success_at: datetime.datetime | None
    last_failure_at: datetime.datetime | None
    last_error: str | None
    overdue: bool
    paused: bool
    overdue_at: datetime.datetime | None


def _schedule(row: queries.Row) -> Schedule:
    names = {f.name for f in fields(Schedule)}
    return Schedule(**{k: v for k, v in row.items() if k in names})


# -- admin API -----------------------------------------------------------


def _check_name(name: str) -> str:
    if not name or len(name) > 128 or "\x00" in name or name != name.strip():
        raise InvalidSchedule(
            f"schedule name must be 1 to 128 characters without surrounding "
            f"spaces, got {name!r:.60}"
        )
    return name


def _check_policy(missed_runs: str, max_catch_up: int) -> None:
    if missed_runs not in MISSED_RUNS:
        raise InvalidSchedule(
            f"invalid missed-run policy {missed_runs!r}: "
            f"one of {', '.join(MISSED_RUNS)}"
        )
    if not 1 <= max_catch_up <= 10_000:
        raise InvalidSchedule("max_catch_up must be between 1 and 10000")


def _check_interval(value: datetime.timedelta | None) -> datetime.timedelta | None:
    if value is not None and value <= datetime.timedelta(0):
        raise InvalidSchedule("expected_interval must be positive")
    return value


def _job_fields(
    app: App,
    task: TaskRef,
    args: Mapping[str, Any] | None,
    queue: str | None,
    priority: int | None,
) -> dict[str, Any]:
    """Validate task, args, queue and priority like an enqueue would."""
    resolved = enqueue.resolve_task(app, task)
    [job] = enqueue.build_jobs(
        resolved, [args or {}], enqueue.JobOptions(queue=queue, priority=priority)
    )
    return {
        "task_name": job.task_name,
        "args": job.args,
        "queue_name": job.queue_name,
        "priority": job.priority,
    }


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def add_schedule(
    target: Target,
    app: App,
    name: str,
    task: TaskRef,
    *,
    cron: str | None = None,
    interval_seconds: float | None = None,
    args: Mapping[str, Any] | None = None,
    queue: str | None = None,
    priority: int | None = None,
    queueing_lock: str | None = None,
    missed_runs: MissedRuns = "skip",
    max_catch_up: int = 100,
    expected_interval: datetime.timedelta | None = None,
    paused: bool = False,
) -> Schedule:
    """Store a new schedule; running workers pick it up within a poll interval.

    ``task`` must be one of ``app``'s tasks and ``args`` must fit its
    signature (checked as at enqueue); exactly one of ``cron`` and
    ``interval_seconds``. ``queue``/``priority`` default to the task's.
    ``queueing_lock``: a tick is skipped while a job with that lock waits.
    ``expected_interval`` overrides the one derived from the timing (health).
    Raises ``InvalidSchedule``, ``TaskNotFound``, ``InvalidPayload`` or
    ``ScheduleExists``; nothing is written then.
    """
    _check_name(name)
    timing = Timing.of(cron, interval_seconds)
    _check_policy(missed_runs, max_catch_up)
    job = _job_fields(app, task, args, queue, priority)
    with database.connection(target) as conn:
        row = queries.fetch_one(
            conn,
            "schedules_insert",
            schedule_name=name,
            cron=timing.cron,
            interval_seconds=timing.interval_seconds,
            queueing_lock=queueing_lock,
            paused=paused,
            missed_runs=missed_runs,
            max_catch_up=max_catch_up,
            expected_interval=timing.expected_interval(),
            expected_interval_override=_check_interval(expected_interval),
            next_run_at=timing.next_after(_now()),
            **job,
        )
    if row is None:
        raise ScheduleExists(f"a schedule named {name!r} already exists")
    return _schedule(row)


def get_schedule(target: Target, name: str) -> Schedule:
    with database.connection(target) as conn:
        row = queries.fetch_one(conn, "schedules_get", schedule_name=name)
    if row is None:
        raise ScheduleNotFound(f"no schedule named {name!r}")
    return _schedule(row)


def list_schedules(target: Target) -> list[Schedule]:
    """Every runtime schedule, by name."""
    with database.connection(target) as conn:
        return [_schedule(row) for row in queries.fetch_all(conn, "schedules_list")]


def _save(
    conn: psycopg.Connection[Any], schedule: Schedule, *, reset_clock: bool
) -> Schedule:
    values = {f.name: getattr(schedule, f.name) for f in fields(Schedule)}
    values["args"] = Jsonb(schedule.args)
    values["schedule_name"] = values.pop("name")
    row = queries.fetch_one(conn, "schedules_update", reset_clock=reset_clock, **values)
    if row is None:
        raise ScheduleNotFound(f"no schedule named {schedule.name!r}")
    return _schedule(row)


def update_schedule(
    target: Target,
    app: App,
    name: str,
    *,
    task: TaskRef | None = None,
    cron: str | None = None,
    interval_seconds: float | None = None,
    args: Mapping[str, Any] | None = None,
    queue: str | None = None,
    priority: int | None = None,
    queueing_lock: str | _Unset | None = UNSET,
    missed_runs: MissedRuns | None = None,
    max_catch_up: int | None = None,
    expected_interval: datetime.timedelta | _Unset | None = UNSET,
) -> Schedule:
    """Change a schedule; options left out keep their value.

    A new cron or interval takes effect from now (the next tick is computed
    again and the overdue clock restarts). Task and args are validated again.
    """
    with database.connection(target) as conn, conn.transaction():
        current = get_schedule(conn, name)
        changes: dict[str, Any] = {}
        reset_clock = cron is not None or interval_seconds is not None
        if reset_clock:
            timing = Timing.of(cron, interval_seconds)
            changes.update(
                cron=timing.cron,
                interval_seconds=timing.interval_seconds,
                expected_interval=timing.expected_interval(),
                next_run_at=timing.next_after(_now()),
            )
        job = _job_fields(
            app,
            task if task is not None else current.task_name,
            args if args is not None else current.args,
            queue if queue is not None else current.queue_name,
            priority if priority is not None else current.priority,
        )
        changes.update(job)
        changes["args"] = json.loads(job["args"].obj)
        if not isinstance(queueing_lock, _Unset):
            changes["queueing_lock"] = queueing_lock
        if not isinstance(expected_interval, _Unset):
            changes["expected_interval_override"] = _check_interval(expected_interval)
        if missed_runs is not None:
            changes["missed_runs"] = missed_runs
        if max_catch_up is not None:
            changes["max_catch_up"] = max_catch_up
        updated = replace(current, **changes)
        _check_policy(updated.missed_runs, updated.max_catch_up)
        return _save(conn, updated, reset_clock=reset_clock)


def pause_schedule(target: Target, name: str) -> Schedule:
    """Stop enqueueing ticks (they are not caught up on resume)."""
    with database.connection(target) as conn, conn.transaction():
        current = get_schedule(conn, name)
        return _save(conn, replace(current, paused=True), reset_clock=False)


def resume_schedule(target: Target, name: str) -> Schedule:
    """Enqueue ticks again from the next one after now."""
    with database.connection(target) as conn, conn.transaction():
        current = get_schedule(conn, name)
        if not current.paused:
            return current
        resumed = replace(
            current, paused=False, next_run_at=current.timing.next_after(_now())
        )
        return _save(conn, resumed, reset_clock=True)


def remove_schedule(target: Target, name: str) -> None:
    """Delete a runtime schedule (with its run history), or forget a
    code-declared periodic task's health row (a worker that still declares it
    registers it again at start)."""
    with database.connection(target) as conn:
        row = queries.fetch_one(conn, "schedules_delete", schedule_name=name)
    if row is None or row["schedules"] + row["periodic_tasks"] == 0:
        raise ScheduleNotFound(f"no schedule named {name!r}")


def run_schedule(target: Target, name: str) -> ScheduleRunNow:
    """Enqueue one run of a schedule now (paused or not); its ticks go on."""
    with database.connection(target) as conn:
        row = queries.fetch_one(conn, "schedules_run_now", schedule_name=name)
    if row is None:
        raise ScheduleNotFound(f"no schedule named {name!r}")
    return ScheduleRunNow(schedule=name, job_id=row["job_id"], tick_at=row["tick_at"])


def list_runs(target: Target, name: str, *, limit: int = 20) -> list[ScheduleRun]:
    """The latest runs of a schedule, newest first (100 are kept)."""
    with database.connection(target) as conn:
        get_schedule(conn, name)
        rows = queries.fetch_all(
            conn, "schedules_runs", schedule_name=name, limit=limit
        )
    return [ScheduleRun(**row) for row in rows]


def set_expected_interval(
    target: Target, name: str, expected_interval: datetime.timedelta | None
) -> None:
    """Override (``None``: stop overriding) the expected interval of a
    schedule or a code-declared periodic task."""
    with database.connection(target) as conn:
        row = queries.fetch_one(
            conn,
            "schedules_set_expected_interval",
            schedule_name=name,
            expected_interval=_check_interval(expected_interval),
        )
    if row is None or row["updated"] == 0:
        raise ScheduleNotFound(f"no schedule or periodic task named {name!r}")


def periodic_health(
    target: Target, *, overdue_only: bool = False
) -> list[PeriodicHealth]:
    """Rows of ``pgjobs.periodic_health``, by name."""
    with database.connection(target) as conn:
        rows = queries.fetch_all(
            conn, "schedules_periodic_health", overdue_only=overdue_only
        )
    return [PeriodicHealth(**row) for row in rows]


def overdue(target: Target) -> list[PeriodicHealth]:
    """Schedules and periodic tasks with no success for too long."""
    return periodic_health(target, overdue_only=True)


# -- worker side ---------------------------------------------------------


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


async def run_due_schedules(app: App) -> list[EnqueuedTick]:
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


async def register_periodic_tasks(app: App) -> None:
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


async def schedule_ticker(worker: Worker) -> None:
    """Worker side task: register periodic tasks, then enqueue due ticks of
    runtime schedules every ``PGJOBS_SCHEDULE_POLL_INTERVAL`` seconds."""
    app: App = worker.app  # type: ignore[assignment]
    try:
        await register_periodic_tasks(app)
    except Exception as exc:
        if resilience.is_connection_error(exc):
            raise  # the worker retries the side task (one log line per outage)
        logger.exception(
            "registering periodic tasks failed; their health is not tracked",
            extra={"action": "periodic_tasks_register_error"},
        )
    while True:
        try:
            await run_due_schedules(app)
        except Exception as exc:
            if resilience.is_connection_error(exc):
                raise
            logger.exception(
                "enqueueing due schedules failed; trying again",
                extra={"action": "schedule_tick_error"},
            )
        await asyncio.sleep(app.settings.schedule_poll_interval)


def install(app: App) -> None:
    """Give every worker of ``app`` the schedule ticker (``pgjobs.App`` does)."""
    app.worker_side_tasks.append(schedule_ticker)


# -- code-declared interval and after-start tasks -------------------------


def every(
    app: App, seconds: int, *, periodic_id: str = "", **configure_kwargs: Any
) -> Callable[[Task], Task]:
    """Run a task every ``seconds`` through procrastinate's scheduler.

    The interval becomes a cron expression (every 15 s: ``* * * * * */15``,
    every 2 h: ``0 */2 * * *``), so it must divide a minute, an hour or a
    day; the task receives ``timestamp`` like any periodic task. Pass
    ``queueing_lock=...`` to skip a tick while the previous job still waits.
    """
    cron = interval_as_cron(seconds)

    def wrap(task: Task) -> Task:
        app.periodic(cron=cron, periodic_id=periodic_id, **configure_kwargs)(task)
        return task

    return wrap


async def claim_startup_run(
    app: App,
    task: Task,
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
    app: App,
    *,
    delay: float = 5.0,
    name: str | None = None,
    args: Mapping[str, Any] | None = None,
) -> Callable[[Task], Task]:
    """Run a task once, ``delay`` seconds after the workers start, once per
    deployment (not once per worker process; see ``claim_startup_run``).

    It is a delayed job enqueued by the first worker to start.
    """
    if delay < 0:
        raise InvalidJobOptions("delay must not be negative")

    def wrap(task: Task) -> Task:
        task.payload.dump(args or {})  # refuse bad args at import time
        run_name = name or task.name

        async def run_after_start(worker: Worker) -> None:
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
                if resilience.is_connection_error(exc):
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
