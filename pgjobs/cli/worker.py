"""``pgjobs worker``: run jobs (same worker as ``procrastinate worker``)."""

from __future__ import annotations

import click

from pgjobs.cli.common import State, app_option, pass_state
from pgjobs.worker import running as worker_module


@click.command()
@app_option
@click.option(
    "-q",
    "--queue",
    "queues",
    multiple=True,
    help="Queue to work (repeatable; default all).",
)
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(1, 1000),
    help="Jobs run at once (default PGJOBS_CONCURRENCY).",
)
@click.option(
    "--prefetch",
    type=click.IntRange(0, 1000),
    help="Jobs claimed beyond free slots (default PGJOBS_PREFETCH, 0).",
)
@click.option(
    "--shutdown-grace",
    type=click.FloatRange(0),
    help="Seconds running jobs get to finish on SIGTERM; those still running "
    "then go back to the queue (default PGJOBS_SHUTDOWN_GRACE, 30).",
)
@click.option("--name", help="Worker name in logs.")
@click.option(
    "--one-shot", is_flag=True, help="Exit when no job is left instead of waiting."
)
@pass_state
def worker(
    state: State,
    app_path: str | None,
    queues: tuple[str, ...],
    concurrency: int | None,
    prefetch: int | None,
    shutdown_grace: float | None,
    name: str | None,
    one_shot: bool,
) -> None:
    """Run a worker until SIGTERM/SIGINT.

    On SIGTERM it claims nothing new and lets running jobs finish (up to the
    grace period); the jobs still running then go back to the queue, no
    attempt counted.
    """
    worker_module.check_queues(queues)
    app = state.load_app(app_path)
    worker_module.run(
        app,
        queues=queues,
        concurrency=concurrency,
        prefetch=prefetch,
        shutdown_grace=shutdown_grace,
        wait=not one_shot,
        name=name,
    )
