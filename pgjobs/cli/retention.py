"""``pgjobs prune``: delete old finished jobs and dead letters (retention)."""

from __future__ import annotations

import dataclasses
import datetime

import click

from pgjobs.admin import retention
from pgjobs.cli.common import State, json_option, parse_age, pass_state, print_json


@click.command()
@click.option("--succeeded-older-than", help="Age of succeeded jobs to delete (7d).")
@click.option(
    "--failed-older-than",
    help="Age of failed/cancelled/aborted jobs and error history to delete (30d).",
)
@click.option("--dead-letters-older-than", help="Age of dead letters to delete (90d).")
@click.option(
    "--keep-succeeded",
    type=click.IntRange(0),
    help="Keep at most N succeeded jobs per task.",
)
@click.option(
    "--keep-failed",
    type=click.IntRange(0),
    help="Keep at most N failed/cancelled/aborted jobs per task.",
)
@click.option("--dry-run", is_flag=True, help="Count what would go; delete nothing.")
@click.option(
    "--batch-size",
    type=click.IntRange(1, 100_000),
    help="Rows per delete statement (default PGJOBS_RETENTION_BATCH_SIZE).",
)
@json_option
@pass_state
def prune(
    state: State,
    succeeded_older_than: str | None,
    failed_older_than: str | None,
    dead_letters_older_than: str | None,
    keep_succeeded: int | None,
    keep_failed: int | None,
    dry_run: bool,
    batch_size: int | None,
    as_json: bool,
) -> None:
    """Delete old finished jobs and dead letters (retention).

    With no option, the PGJOBS_RETENTION_* settings say what to delete.
    Waiting and running jobs are never touched. Every prune also deletes the
    task stats rollups older than PGJOBS_RETENTION_STATS_ROLLUPS_DAYS (7).
    """
    settings = state.settings
    given = retention.RetentionPolicy(
        succeeded_after=parse_age(succeeded_older_than)
        if succeeded_older_than
        else None,
        failed_after=parse_age(failed_older_than) if failed_older_than else None,
        dead_letters_after=(
            parse_age(dead_letters_older_than) if dead_letters_older_than else None
        ),
        keep_succeeded=keep_succeeded,
        keep_failed=keep_failed,
        stats_rollups_after=datetime.timedelta(
            days=settings.retention_stats_rollups_days
        ),
    )
    policy = (
        given if given.enabled else retention.RetentionPolicy.from_settings(settings)
    )
    result = retention.prune(
        settings,
        policy,
        dry_run=dry_run,
        batch_size=batch_size or settings.retention_batch_size,
    )
    if as_json:
        print_json(result)
        return
    verb = "would delete" if dry_run else "deleted"
    counts = dataclasses.asdict(result)
    del counts["dry_run"]
    click.echo(
        f"{verb}: "
        + ", ".join(
            f"{count} {name.replace('_', ' ')}" for name, count in counts.items()
        )
    )
