"""``pgjobs jobs``: status, listing, cancel/abort and retry of jobs."""

from __future__ import annotations

import click

from pgjobs.admin import jobs as jobs_module
from pgjobs.cli.common import (
    State,
    json_option,
    json_text,
    parse_age,
    pass_state,
    print_json,
    print_table,
)


@click.group()
def jobs() -> None:
    """Inspect and steer jobs."""


@jobs.command("list")
@click.option("--queue", help="Only this queue.")
@click.option("--task", help="Only this task name.")
@click.option(
    "--status", type=click.Choice(jobs_module.STATUSES), help="Only this state."
)
@click.option("--older-than", metavar="AGE", help="Enqueued more than AGE ago (7d).")
@click.option("--newer-than", metavar="AGE", help="Enqueued within AGE (e.g. 15m).")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@json_option
@pass_state
def list_(
    state: State,
    queue: str | None,
    task: str | None,
    status: str | None,
    older_than: str | None,
    newer_than: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List jobs, newest first."""
    found = jobs_module.list_jobs(
        state.settings,
        queue=queue,
        task=task,
        status=status,
        older_than=parse_age(older_than) if older_than else None,
        newer_than=parse_age(newer_than) if newer_than else None,
        limit=limit,
    )
    if as_json:
        print_json(found)
        return
    print_table(
        [
            {
                "id": job.id,
                "queue": job.queue_name,
                "task": job.task_name,
                "status": job.status + (" (expired)" if job.expired_at else ""),
                "attempts": job.attempts,
                "progress": job.progress,
                "enqueued_at": job.enqueued_at,
                "scheduled_at": job.scheduled_at,
                "last_error": job.last_error_type,
            }
            for job in found
        ],
        [
            "id",
            "queue",
            "task",
            "status",
            "attempts",
            "progress",
            "enqueued_at",
            "scheduled_at",
            "last_error",
        ],
    )


@jobs.command()
@click.argument("job_id", type=int)
@json_option
@pass_state
def show(state: State, job_id: int, as_json: bool) -> None:
    """Show one job: state, attempts, timestamps, progress and errors."""
    job = jobs_module.get_job(state.settings, job_id)
    if as_json:
        print_json(job)
        return
    fields = [
        ("id", job.id),
        ("task", job.task_name),
        ("queue", job.queue_name),
        ("status", job.status + (" (abort requested)" if job.abort_requested else "")),
        ("attempts", job.attempts),
        ("args", json_text(job.args)),
        ("priority", job.priority),
        ("lock", job.lock),
        ("created_at", job.created_at),
        ("scheduled_at", job.scheduled_at),
        ("expires_at", job.expires_at),
        ("started_at", job.started_at),
        ("finished_at", job.finished_at),
        (
            "progress",
            None
            if job.progress is None
            else f"{job.progress}%"
            + (f" {job.progress_message}" if job.progress_message else ""),
        ),
    ]
    for name, value in fields:
        if value is not None:
            click.echo(f"{name + ':':14}{value}")
    for reason in job.waiting_reasons:
        click.echo(f"{'why:':14}{reason}")
    if job.errors:
        click.echo("errors:")
        for error in job.errors:
            kind = "interrupted, " if error.kind == "interruption" else ""
            click.echo(
                f"  attempt {error.attempt} at {error.failed_at}: {kind}"
                f"{error.error_type}: {error.error_message}"
            )


@jobs.command()
@click.argument("job_id", type=int)
@click.option("--abort", is_flag=True, help="Also ask a running job to stop.")
@json_option
@pass_state
def cancel(state: State, job_id: int, abort: bool, as_json: bool) -> None:
    """Cancel a waiting job (--abort: request the abort of a running one)."""
    result = jobs_module.cancel_job(state.settings, job_id, abort=abort)
    if as_json:
        print_json(result)
        return
    if result.outcome == "cancelled":
        click.echo(f"job {job_id} cancelled")
    else:
        click.echo(f"abort of job {job_id} requested")


@jobs.command()
@click.argument("job_id", type=int)
@json_option
@pass_state
def retry(state: State, job_id: int, as_json: bool) -> None:
    """Run a failed job again now."""
    retried = jobs_module.retry_job(state.settings, job_id)
    if as_json:
        print_json({"job_id": retried, "status": "todo"})
        return
    click.echo(f"job {retried} queued again")
