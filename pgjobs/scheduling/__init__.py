"""Scheduling: cron and interval schedules, declared in code or added at runtime.

``cron`` (expressions and ticks), ``schedules`` (runtime schedules in
Postgres, their admin API, periodic health), ``ticker`` (what every worker
does: enqueue due ticks, record periodic tasks) and ``declared`` (interval and
after-start tasks in code). ``pgjobs.schedules`` is this package: the public
names of all four.
"""

from pgjobs.scheduling.declared import after_start, claim_startup_run, every
from pgjobs.scheduling.schedules import (
    MISSED_RUNS,
    UNSET,
    MissedRuns,
    PeriodicHealth,
    Schedule,
    ScheduleRun,
    ScheduleRunNow,
    TaskRef,
    add_schedule,
    get_schedule,
    list_runs,
    list_schedules,
    overdue,
    pause_schedule,
    periodic_health,
    remove_schedule,
    resume_schedule,
    run_schedule,
    set_expected_interval,
    update_schedule,
)
from pgjobs.scheduling.ticker import (
    EnqueuedTick,
    ScheduleHost,
    late_window,
    plan_ticks,
    register_periodic_tasks,
    run_due_schedules,
)

__all__ = [
    "MISSED_RUNS",
    "UNSET",
    "EnqueuedTick",
    "MissedRuns",
    "PeriodicHealth",
    "Schedule",
    "ScheduleHost",
    "ScheduleRun",
    "ScheduleRunNow",
    "TaskRef",
    "add_schedule",
    "after_start",
    "claim_startup_run",
    "every",
    "get_schedule",
    "late_window",
    "list_runs",
    "list_schedules",
    "overdue",
    "pause_schedule",
    "periodic_health",
    "plan_ticks",
    "register_periodic_tasks",
    "remove_schedule",
    "resume_schedule",
    "run_due_schedules",
    "run_schedule",
    "set_expected_interval",
    "update_schedule",
]
