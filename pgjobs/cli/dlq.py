"""``pgjobs dlq``: dead letters (jobs that failed for good)."""

from __future__ import annotations

import click

from pgjobs.cli.common import (
    State,
    json_option,
    json_text,
    parse_age,
    pass_state,
    print_json,
    print_table,
)
from pgjobs.failures import dead_letters


def filters(func: click.decorators.FC) -> click.decorators.FC:
    for option in reversed(
        [
            click.option("--task", help="Only this task name."),
            click.option("--queue", help="Only this queue."),
            click.option(
                "--error-type", help="Only this error type (e.g. ValueError)."
            ),
            click.option("--since", help="Failed within this age (e.g. 2h, 7d)."),
        ]
    ):
        func = option(func)
    return func


@click.group()
def dlq() -> None:
    """Dead letters: list, show, replay, purge."""


@dlq.command("list")
@filters
@click.option(
    "--pending/--replayed", default=None, help="Only letters not replayed / replayed."
)
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True)
@json_option
@pass_state
def list_(
    state: State,
    task: str | None,
    queue: str | None,
    error_type: str | None,
    since: str | None,
    pending: bool | None,
    limit: int,
    as_json: bool,
) -> None:
    """List dead letters, newest first."""
    letters = dead_letters.list_dead_letters(
        state.settings,
        task=task,
        queue=queue,
        error_type=error_type,
        since=parse_age(since) if since else None,
        replayed=None if pending is None else not pending,
        limit=limit,
    )
    if as_json:
        print_json(letters)
        return
    print_table(
        [
            {
                "id": letter.id,
                "job_id": letter.job_id,
                "task": letter.task_name,
                "queue": letter.queue_name,
                "attempts": letter.attempts,
                "error": f"{letter.error_type}: {letter.error_message}"[:60],
                "failed_at": letter.last_failed_at,
                "replayed_as": letter.replay_job_id,
            }
            for letter in letters
        ],
        [
            "id",
            "job_id",
            "task",
            "queue",
            "attempts",
            "error",
            "failed_at",
            "replayed_as",
        ],
    )


@dlq.command()
@click.argument("letter_id", type=int)
@json_option
@pass_state
def show(state: State, letter_id: int, as_json: bool) -> None:
    """Show one dead letter with its traceback."""
    letter = dead_letters.get_dead_letter(state.settings, letter_id)
    if as_json:
        print_json(letter)
        return
    for name in (
        "id",
        "job_id",
        "task_name",
        "queue_name",
        "args",
        "attempts",
        "error_type",
        "error_message",
        "first_failed_at",
        "last_failed_at",
        "replayed_at",
        "replay_job_id",
    ):
        value = getattr(letter, name)
        if name == "args":
            value = json_text(value)
        if value is not None:
            click.echo(f"{name + ':':17}{value}")
    if letter.traceback:
        click.echo("traceback:")
        click.echo(letter.traceback.rstrip())


@dlq.command()
@click.argument("letter_ids", type=int, nargs=-1)
@filters
@click.option("--all", "replay_all", is_flag=True, help="Replay every pending letter.")
@json_option
@pass_state
def replay(
    state: State,
    letter_ids: tuple[int, ...],
    task: str | None,
    queue: str | None,
    error_type: str | None,
    since: str | None,
    replay_all: bool,
    as_json: bool,
) -> None:
    """Enqueue dead letters again as new jobs (by id, by filter, or --all)."""
    if len(letter_ids) == 1 and not any((task, queue, error_type, since)):
        replayed = [dead_letters.replay_dead_letter(state.settings, letter_ids[0])]
    else:
        replayed = dead_letters.replay_dead_letters(
            state.settings,
            ids=list(letter_ids) or None,
            task=task,
            queue=queue,
            error_type=error_type,
            since=parse_age(since) if since else None,
            all=replay_all,
        )
    if as_json:
        print_json(replayed)
        return
    for item in replayed:
        click.echo(
            f"dead letter {item.letter_id} -> job {item.job_id} ({item.task_name})"
        )
    click.echo(f"{len(replayed)} dead letter(s) replayed")


@dlq.command()
@click.option(
    "--older-than", required=True, help="Age of letters to delete (e.g. 30d, 12h)."
)
@click.option("--replayed-only", is_flag=True, help="Keep letters not replayed yet.")
@json_option
@pass_state
def purge(state: State, older_than: str, replayed_only: bool, as_json: bool) -> None:
    """Delete dead letters older than an age."""
    deleted = dead_letters.purge_dead_letters(
        state.settings, parse_age(older_than), replayed_only=replayed_only
    )
    if as_json:
        print_json({"deleted": deleted})
        return
    click.echo(f"{deleted} dead letter(s) deleted")
