"""``pgjobs defer``: enqueue one job from the command line."""

from __future__ import annotations

import click

from pgjobs.cli.common import (
    State,
    app_option,
    json_option,
    parse_args_json,
    pass_state,
    print_json,
)
from pgjobs.db import connections


@click.command()
@click.argument("task")
@click.option(
    "--args",
    "args_json",
    default="{}",
    show_default=True,
    help="Task arguments as a JSON object.",
)
@app_option
@click.option("--queue", help="Queue (default: the task's).")
@click.option("--priority", type=int, help="Higher runs first (default: the task's).")
@click.option(
    "--delay",
    type=click.FloatRange(0),
    metavar="SECONDS",
    help="Run no sooner than SECONDS from now.",
)
@click.option("--lock", help="Jobs sharing a lock run one at a time.")
@click.option(
    "--queueing-lock",
    help="Refuse the job if one with this queueing lock is already waiting.",
)
@click.option(
    "--ignore-duplicate",
    is_flag=True,
    help="A queueing-lock duplicate is not an error (nothing is enqueued).",
)
@json_option
@pass_state
def defer(
    state: State,
    task: str,
    args_json: str,
    app_path: str | None,
    queue: str | None,
    priority: int | None,
    delay: float | None,
    lock: str | None,
    queueing_lock: str | None,
    ignore_duplicate: bool,
    as_json: bool,
) -> None:
    """Enqueue one job of TASK (validated like app.enqueue).

    Example: pgjobs defer send_email --args '{"user_id": 42}' --app myapp.jobs.app
    """
    payload = parse_args_json(args_json)
    app = state.load_app(app_path)
    options = {
        "queue": queue,
        "priority": priority,
        "delay": delay,
        "lock": lock,
        "queueing_lock": queueing_lock,
    }
    with connections.connection(app.settings) as conn:
        job_id = app.enqueue(
            conn,
            task,
            payload,
            on_duplicate="ignore" if ignore_duplicate else "raise",
            **{k: v for k, v in options.items() if v is not None},
        )
    if as_json:
        print_json({"job_id": job_id, "task": task})
    elif job_id is None:
        click.echo(f"not enqueued: a {task} job with that queueing lock is waiting")
    else:
        click.echo(f"job {job_id} enqueued ({task})")
