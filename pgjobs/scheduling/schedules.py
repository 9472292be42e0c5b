"""Runtime schedules: rows of ``pgjobs.schedules`` added, changed, paused,
resumed, removed and run on demand from Python (the functions below) or
``pgjobs schedules ...``; and periodic health.

Three ways to run something periodically: code-declared cron
(``@app.periodic``, and ``every``/``after_start`` in
``pgjobs.scheduling.declared``), and runtime schedules (here), which the
workers enqueue (``pgjobs.scheduling.ticker``, its ``missed_runs`` policies).

``pgjobs.periodic_health`` (a SQL view; ``periodic_health()`` here) shows each
schedule and code-declared periodic task with its expected interval, last
enqueue, last success and failure, and whether it is overdue: no success
within expected interval + grace (greatest of 60 s and 10 % of the interval).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Final, Literal, get_args

import procrastinate.tasks
import psycopg
from psycopg.types.json import Jsonb

from pgjobs.db import connections, queries
from pgjobs.db.connections import Target
from pgjobs.enqueueing import enqueue
from pgjobs.errors import (
    InvalidSchedule,
    ScheduleExists,
    ScheduleNotFound,
)
from pgjobs.scheduling.cron import Timing

if TYPE_CHECKING:
    pass


MissedRuns = Literal["skip", "once", "all"]
MISSED_RUNS: Final = get_args(MissedRuns)
TaskRef = procrastinate.tasks.Task[Any, Any, Any] | str


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
    app: enqueue.TaskRegistry,
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
    app: enqueue.TaskRegistry,
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
    with connections.connection(target) as conn:
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
    with connections.connection(target) as conn:
        row = queries.fetch_one(conn, "schedules_get", schedule_name=name)
    if row is None:
        raise ScheduleNotFound(f"no schedule named {name!r}")
    return _schedule(row)


def list_schedules(target: Target) -> list[Schedule]:
    """Every runtime schedule, by name."""
    with connections.connection(target) as conn:
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
    app: enqueue.TaskRegistry,
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
    with connections.connection(target) as conn, conn.transaction():
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
    with connections.connection(target) as conn, conn.transaction():
        current = get_schedule(conn, name)
        return _save(conn, replace(current, paused=True), reset_clock=False)


def resume_schedule(target: Target, name: str) -> Schedule:
    """Enqueue ticks again from the next one after now."""
    with connections.connection(target) as conn, conn.transaction():
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
    with connections.connection(target) as conn:
        row = queries.fetch_one(conn, "schedules_delete", schedule_name=name)
    if row is None or row["schedules"] + row["periodic_tasks"] == 0:
        raise ScheduleNotFound(f"no schedule named {name!r}")


def run_schedule(target: Target, name: str) -> ScheduleRunNow:
    """Enqueue one run of a schedule now (paused or not); its ticks go on."""
    with connections.connection(target) as conn:
        row = queries.fetch_one(conn, "schedules_run_now", schedule_name=name)
    if row is None:
        raise ScheduleNotFound(f"no schedule named {name!r}")
    return ScheduleRunNow(schedule=name, job_id=row["job_id"], tick_at=row["tick_at"])


def list_runs(target: Target, name: str, *, limit: int = 20) -> list[ScheduleRun]:
    """The latest runs of a schedule, newest first (100 are kept)."""
    with connections.connection(target) as conn:
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
    with connections.connection(target) as conn:
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
    with connections.connection(target) as conn:
        rows = queries.fetch_all(
            conn, "schedules_periodic_health", overdue_only=overdue_only
        )
    return [PeriodicHealth(**row) for row in rows]


def overdue(target: Target) -> list[PeriodicHealth]:
    """Schedules and periodic tasks with no success for too long."""
    return periodic_health(target, overdue_only=True)
