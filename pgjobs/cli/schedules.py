"""``pgjobs schedules``: runtime schedules and periodic health."""

from __future__ import annotations

import sys
from typing import Any

import click

from pgjobs.cli.common import (
    State,
    app_option,
    json_option,
    parse_age,
    parse_args_json,
    pass_state,
    print_json,
    print_table,
)
from pgjobs.errors import InvalidSchedule
from pgjobs.scheduling import schedules as schedules_module


def _args(text: str | None) -> dict[str, Any] | None:
    return None if text is None else parse_args_json(text)


def _every(text: str | None) -> float | None:
    if text is None:
        return None
    seconds = parse_age(text).total_seconds()
    if seconds < 1 or not seconds.is_integer():
        raise InvalidSchedule(
            f"invalid --every {text!r}: a whole number of seconds >= 1 (e.g. 30s, 5m)"
        )
    return seconds


COLUMNS = [
    "name",
    "task",
    "schedule",
    "queue",
    "paused",
    "missed_runs",
    "next_run_at",
    "last_enqueued_at",
    "last_success_at",
]


def _row(schedule: schedules_module.Schedule) -> dict[str, Any]:
    return {
        "name": schedule.name,
        "task": schedule.task_name,
        "schedule": schedule.schedule,
        "queue": schedule.queue_name,
        "paused": "yes" if schedule.paused else "",
        "missed_runs": schedule.missed_runs,
        "next_run_at": "" if schedule.paused else schedule.next_run_at,
        "last_enqueued_at": schedule.last_enqueued_at,
        "last_success_at": schedule.last_success_at,
    }


def _show(schedule: schedules_module.Schedule, as_json: bool, verb: str) -> None:
    if as_json:
        print_json(schedule)
    else:
        click.echo(f"schedule {schedule.name} {verb} ({schedule.schedule})")


timing_options = [
    click.option("--cron", help="Cron expression (5 fields, optional 6th: seconds)."),
    click.option("--every", "every", help="Interval instead of cron: 30s, 5m, 2h, 1d."),
    click.option("--args", "args_json", help="Task arguments as a JSON object."),
    click.option("--queue", help="Queue (default: the task's)."),
    click.option("--priority", type=int, help="Priority (default: the task's)."),
    click.option(
        "--missed-runs",
        type=click.Choice(schedules_module.MISSED_RUNS),
        help="Ticks missed while no worker ran: skip, once (one catch-up), all.",
    ),
    click.option(
        "--max-catch-up",
        type=click.IntRange(1, 10_000),
        help="With --missed-runs all: most catch-up runs (default 100).",
    ),
    click.option(
        "--expected-interval",
        help="Override the expected interval for health (e.g. 26h).",
    ),
    click.option(
        "--queueing-lock",
        help="Skip a tick while a job with this queueing lock still waits.",
    ),
    app_option,
    json_option,
]


def with_timing_options(func: click.decorators.FC) -> click.decorators.FC:
    for option in reversed(timing_options):
        func = option(func)
    return func


@click.group()
def schedules() -> None:
    """Runtime schedules: add, change, list, pause, resume, remove, run, health."""


@schedules.command()
@click.argument("name")
@click.argument("task")
@with_timing_options
@click.option("--paused", is_flag=True, help="Create it paused.")
@pass_state
def add(
    state: State,
    name: str,
    task: str,
    cron: str | None,
    every: str | None,
    args_json: str | None,
    queue: str | None,
    priority: int | None,
    missed_runs: schedules_module.MissedRuns | None,
    max_catch_up: int | None,
    expected_interval: str | None,
    queueing_lock: str | None,
    app_path: str | None,
    as_json: bool,
    paused: bool,
) -> None:
    """Add schedule NAME running TASK (validated against --app).

    Example: pgjobs schedules add nightly-cleanup cleanup --cron '0 0 * * *'
    --app myapp.jobs.app
    """
    if (cron is None) == (every is None):
        raise InvalidSchedule("give exactly one of --cron and --every")
    app = state.load_app(app_path)
    schedule = schedules_module.add_schedule(
        app.settings,
        app,
        name,
        task,
        cron=cron,
        interval_seconds=_every(every),
        args=_args(args_json),
        queue=queue,
        priority=priority,
        queueing_lock=queueing_lock,
        missed_runs=missed_runs or "skip",
        max_catch_up=max_catch_up or 100,
        expected_interval=parse_age(expected_interval) if expected_interval else None,
        paused=paused,
    )
    _show(schedule, as_json, "added")


@schedules.command()
@click.argument("name")
@click.option("--task", help="Run this task instead.")
@with_timing_options
@pass_state
def change(
    state: State,
    name: str,
    task: str | None,
    cron: str | None,
    every: str | None,
    args_json: str | None,
    queue: str | None,
    priority: int | None,
    missed_runs: schedules_module.MissedRuns | None,
    max_catch_up: int | None,
    expected_interval: str | None,
    queueing_lock: str | None,
    app_path: str | None,
    as_json: bool,
) -> None:
    """Change schedule NAME; options left out keep their value."""
    if cron is not None and every is not None:
        raise InvalidSchedule("give at most one of --cron and --every")
    app = state.load_app(app_path)
    options: dict[str, Any] = {}
    if queueing_lock is not None:
        options["queueing_lock"] = queueing_lock or None
    if expected_interval is not None:
        options["expected_interval"] = parse_age(expected_interval)
    schedule = schedules_module.update_schedule(
        app.settings,
        app,
        name,
        task=task,
        cron=cron,
        interval_seconds=_every(every),
        args=_args(args_json),
        queue=queue,
        priority=priority,
        missed_runs=missed_runs,
        max_catch_up=max_catch_up,
        **options,
    )
    _show(schedule, as_json, "changed")


@schedules.command("list")
@json_option
@pass_state
def list_(state: State, as_json: bool) -> None:
    """List runtime schedules."""
    found = schedules_module.list_schedules(state.settings)
    if as_json:
        print_json(found)
        return
    print_table([_row(schedule) for schedule in found], COLUMNS)


@schedules.command()
@click.argument("name")
@json_option
@pass_state
def pause(state: State, name: str, as_json: bool) -> None:
    """Stop enqueueing NAME's ticks (not caught up on resume)."""
    _show(schedules_module.pause_schedule(state.settings, name), as_json, "paused")


@schedules.command()
@click.argument("name")
@json_option
@pass_state
def resume(state: State, name: str, as_json: bool) -> None:
    """Enqueue NAME's ticks again, from the next one."""
    _show(schedules_module.resume_schedule(state.settings, name), as_json, "resumed")


@schedules.command()
@click.argument("name")
@json_option
@pass_state
def remove(state: State, name: str, as_json: bool) -> None:
    """Delete schedule NAME (or forget a code-declared task's health row)."""
    schedules_module.remove_schedule(state.settings, name)
    if as_json:
        print_json({"removed": name})
    else:
        click.echo(f"schedule {name} removed")


@schedules.command()
@click.argument("name")
@json_option
@pass_state
def run(state: State, name: str, as_json: bool) -> None:
    """Enqueue one run of NAME now."""
    result = schedules_module.run_schedule(state.settings, name)
    if as_json:
        print_json(result)
    elif result.job_id is None:
        click.echo(f"not enqueued: schedule {name}'s queueing lock is held")
    else:
        click.echo(f"job {result.job_id} enqueued (schedule {name})")


@schedules.command()
@click.argument("name")
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True)
@json_option
@pass_state
def runs(state: State, name: str, limit: int, as_json: bool) -> None:
    """Latest runs of NAME, newest first."""
    found = schedules_module.list_runs(state.settings, name, limit=limit)
    if as_json:
        print_json(found)
        return
    print_table(
        [
            {
                "tick_at": run.tick_at,
                "trigger": run.trigger,
                "job_id": run.job_id,
                "status": run.status,
                "finished_at": run.finished_at,
            }
            for run in found
        ],
        ["tick_at", "trigger", "job_id", "status", "finished_at"],
    )


@schedules.command()
@click.option("--overdue", "overdue_only", is_flag=True, help="Only overdue rows.")
@json_option
@pass_state
def health(state: State, overdue_only: bool, as_json: bool) -> None:
    """Periodic health; exits 1 when something is overdue."""
    rows = schedules_module.periodic_health(state.settings, overdue_only=overdue_only)
    if as_json:
        print_json(rows)
    else:
        print_table(
            [
                {
                    "name": row.name,
                    "kind": row.kind,
                    "task": row.task_name,
                    "expected": row.expected_interval,
                    "last_success_at": row.last_success_at,
                    "last_failure_at": row.last_failure_at,
                    "status": "OVERDUE"
                    if row.overdue
                    else ("paused" if row.paused else "ok"),
                }
                for row in rows
            ],
            [
                "name",
                "kind",
                "task",
                "expected",
                "last_success_at",
                "last_failure_at",
                "status",
            ],
        )
    if any(row.overdue for row in rows):
        sys.exit(1)
