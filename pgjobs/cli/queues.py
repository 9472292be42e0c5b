"""``pgjobs queues``: pause, resume and list queues (flow control)."""

from __future__ import annotations

import click

from pgjobs.admin import queues as queues_module
from pgjobs.cli.common import State, json_option, pass_state, print_json, print_table


@click.group()
def queues() -> None:
    """Pause, resume and list queues."""


@queues.command("list")
@json_option
@pass_state
def list_(state: State, as_json: bool) -> None:
    """Queues with their jobs by state and whether they are paused."""
    found = queues_module.list_queues(state.settings)
    if as_json:
        print_json(found)
        return
    print_table(
        [
            {
                "queue": q.queue_name,
                "state": "PAUSED" if q.paused else "active",
                "waiting": q.waiting,
                "scheduled": q.scheduled,
                "running": q.running,
                "succeeded": q.succeeded,
                "failed": q.failed,
                "expired": q.expired,
                "dead_letters": q.dead_letters,
                "paused_at": q.paused_at,
                "paused_by": q.paused_by,
            }
            for q in found
        ],
        [
            "queue",
            "state",
            "waiting",
            "scheduled",
            "running",
            "succeeded",
            "failed",
            "expired",
            "dead_letters",
            "paused_at",
            "paused_by",
        ],
    )


@queues.command()
@click.argument("name")
@json_option
@pass_state
def pause(state: State, name: str, as_json: bool) -> None:
    """Stop workers from starting NAME's jobs (enqueues go on; running jobs
    finish)."""
    change = queues_module.pause_queue(state.settings, name)
    if as_json:
        print_json(change)
    elif change.changed:
        click.echo(f"queue {name} paused")
    else:
        click.echo(
            f"queue {name} was already paused (since {change.paused_at}"
            f" by {change.paused_by}): nothing changed"
        )


@queues.command()
@click.argument("name")
@json_option
@pass_state
def resume(state: State, name: str, as_json: bool) -> None:
    """Let workers start NAME's jobs again (idle workers wake at once)."""
    change = queues_module.resume_queue(state.settings, name)
    if as_json:
        print_json(change)
    elif change.changed:
        click.echo(f"queue {name} resumed")
    else:
        click.echo(f"queue {name} is not paused: nothing to resume")
