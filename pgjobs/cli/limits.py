"""``pgjobs limits``: list, set and reset concurrency and rate limits."""

from __future__ import annotations

import click

from pgjobs.admin import limits as limits_module
from pgjobs.cli.common import State, json_option, pass_state, print_json, print_table


@click.group()
def limits() -> None:
    """List, set and reset fleet-wide concurrency and rate limits."""


@limits.command("list")
@click.argument("task", required=False)
@json_option
@pass_state
def list_(state: State, task: str | None, as_json: bool) -> None:
    """Every limit (or TASK's): declared, runtime (wins) and in use now."""
    found = limits_module.list_limits(state.settings, task)
    if as_json:
        print_json(found)
        return
    print_table(
        [
            {
                "task": limit.task_name,
                "limit": limit.kind
                + ("" if limit.key_arg is None else f" per {limit.key_arg}"),
                "declared": limit.declared,
                "runtime": limit.runtime,
                "in_force": limit.effective,
                "in_use": limit.used
                if limit.key_arg is None
                else f"{limit.used} (busiest key {limit.busiest})",
                "waiting": limit.waiting,
                "updated_by": limit.updated_by,
            }
            for limit in found
        ],
        [
            "task",
            "limit",
            "declared",
            "runtime",
            "in_force",
            "in_use",
            "waiting",
            "updated_by",
        ],
    )


@limits.command("set")
@click.argument("task")
@click.option("--concurrency", type=int, help="At most N running at once.")
@click.option("--rate", help="At most N starts per window: 10/s, 100/m, 5/min, 1/h.")
@click.option(
    "--per-key",
    metavar="ARG",
    help="Per value of the task's argument ARG (e.g. tenant_id) instead of task-wide.",
)
@json_option
@pass_state
def set_(
    state: State,
    task: str,
    concurrency: int | None,
    rate: str | None,
    per_key: str | None,
    as_json: bool,
) -> None:
    """Set TASK's runtime limit (wins over the declared one until reset)."""
    changes = limits_module.set_limit(
        state.settings, task, concurrency=concurrency, rate=rate, per_key=per_key
    )
    if as_json:
        print_json(changes)
        return
    for change in changes:
        scope = "" if per_key is None else f" per {per_key}"
        click.echo(f"{task}: {change.kind} limit{scope} set to {change.runtime}")


@limits.command()
@click.argument("task")
@click.option(
    "--kind", type=click.Choice(["concurrency", "rate"]), help="Only this limit."
)
@click.option(
    "--per-key/--task-wide",
    "per_key",
    default=None,
    help="Only the per-key limits, or only the task-wide ones.",
)
@json_option
@pass_state
def reset(
    state: State, task: str, kind: str | None, per_key: bool | None, as_json: bool
) -> None:
    """Drop TASK's runtime limits: the declared values apply again."""
    changes = limits_module.reset_limit(
        state.settings,
        task,
        kind="concurrency" if kind == "concurrency" else ("rate" if kind else None),
        per_key=per_key,
    )
    if as_json:
        print_json(changes)
        return
    reset_ = [c for c in changes if c.changed]
    if not reset_:
        click.echo(f"{task}: no runtime limit to reset")
    for change in reset_:
        scope = " per key" if change.scope == "key" else ""
        click.echo(f"{task}: {change.kind} limit{scope} reset to its declared value")
