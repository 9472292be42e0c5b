"""``pgjobs events``: job events across all workers, optionally followed live."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from typing import TYPE_CHECKING

import click

from pgjobs.cli.common import State, json_option, pass_state

if TYPE_CHECKING:  # imported on use: CLI start-up
    from pgjobs.monitoring.events import JobEvent


def _line(event: JobEvent, as_json: bool) -> str:
    if as_json:
        return json.dumps(asdict(event), default=str)
    text = (
        f"{event.at.isoformat(timespec='milliseconds')}  job {event.job_id}  "
        f"{event.kind:<15} {event.task_name}  queue={event.queue_name}"
    )
    if event.error_type:
        text += f"  {event.error_type}: {(event.error_message or '')[:200]}"
    if event.dead_letter_id is not None:
        text += f"  (dead letter {event.dead_letter_id})"
    return text


@click.command()
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events.")
@click.option("--queue", help="Only jobs of this queue.")
@click.option("--task", help="Only jobs of this task.")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="Newest events printed first.",
)
@json_option
@pass_state
def events(
    state: State,
    follow: bool,
    queue: str | None,
    task: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Job events (enqueued, started, succeeded, failed, rescued, dead_lettered,
    retried, cancelled, aborted...) of all workers; --json: one object a line."""
    from pgjobs.monitoring import events as events_module

    settings = state.settings
    if not follow:
        for event in events_module.latest(
            settings, limit=limit, queue=queue, task=task
        ):
            click.echo(_line(event, as_json))
        return

    async def follow_events() -> None:
        async for event in events_module.stream(
            settings, queue=queue, task=task, backlog=limit
        ):
            click.echo(_line(event, as_json))

    asyncio.run(follow_events())
