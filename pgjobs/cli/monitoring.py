"""``pgjobs stats``, ``pgjobs health``, ``pgjobs metrics``: the monitoring views."""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import asdict

import click

from pgjobs.cli.common import (
    State,
    json_option,
    parse_age,
    pass_state,
    print_json,
    print_table,
)
from pgjobs.errors import PgjobsError
from pgjobs.monitoring import metrics as metrics_module
from pgjobs.monitoring import views


def _seconds(text: str | None) -> float | None:
    return parse_age(text).total_seconds() if text else None


def _number(value: float | None, digits: int = 3) -> str | None:
    return None if value is None else f"{value:.{digits}f}"


def _print_snapshot(snapshot: views.Snapshot) -> None:
    click.echo("Queues")
    print_table(
        [
            {
                **asdict(q),
                "paused": "PAUSED" if q.paused else "",
                "oldest_waiting_s": _number(q.oldest_waiting_s, 1),
            }
            for q in snapshot.queues
        ],
        [
            "queue_name",
            "waiting",
            "scheduled",
            "running",
            "succeeded",
            "failed",
            "dead_letters",
            "oldest_waiting_s",
            "expired",
            "paused",
        ],
    )
    click.echo("\nTasks")
    print_table(
        [
            {
                "task_name": t.task_name,
                "runs": t.runs,
                "succeeded": t.succeeded,
                "failed": t.failed,
                "retried": t.retried,
                "interrupted": t.interrupted,
                "expired": t.expired,
                "failure_rate": _number(t.failure_rate),
                "p50_s": _number(t.p50_s),
                "p95_s": _number(t.p95_s),
                "p99_s": _number(t.p99_s),
                "mean_wait_s": _number(t.mean_wait_s),
            }
            for t in snapshot.tasks
        ],
        [
            "task_name",
            "runs",
            "succeeded",
            "failed",
            "retried",
            "interrupted",
            "expired",
            "failure_rate",
            "p50_s",
            "p95_s",
            "p99_s",
            "mean_wait_s",
        ],
    )
    click.echo("\nWorkers")
    print_table(
        [
            {
                "worker_id": w.worker_id,
                "alive": "yes" if w.alive else "NO",
                "last_heartbeat": w.last_heartbeat,
                "heartbeat_age_s": _number(w.heartbeat_age_s, 1),
                "running_jobs": w.running_jobs,
            }
            for w in snapshot.workers
        ],
        ["worker_id", "alive", "last_heartbeat", "heartbeat_age_s", "running_jobs"],
    )
    if snapshot.stalled_jobs:
        click.echo("\nStalled jobs")
        print_table(
            [asdict(s) for s in snapshot.stalled_jobs],
            ["job_id", "task_name", "queue_name", "worker_id", "started_at"],
        )


@click.command()
@click.option(
    "--window",
    help="History to count finished jobs over (e.g. 15m, 24h; default 1h or "
    "PGJOBS_STATS_WINDOW).",
)
@click.option(
    "--watch",
    type=click.FloatRange(min=0.1),
    metavar="SECONDS",
    help="Print again every SECONDS until Ctrl-C (with --json: one line each).",
)
@json_option
@pass_state
def stats(state: State, window: str | None, watch: float | None, as_json: bool) -> None:
    """Queues, tasks and workers at a glance.

    Reads the views pgjobs.queue_stats, task_stats, workers and stalled_jobs.
    """
    options = views.MonitoringOptions.from_settings(
        state.settings, stats_window=_seconds(window)
    )
    while True:
        snapshot = views.snapshot(state.settings, options)
        if as_json and watch:
            click.echo(json.dumps(asdict(snapshot), default=str))
        elif as_json:
            print_json(asdict(snapshot))
        else:
            if watch:
                click.clear()
            _print_snapshot(snapshot)
        if not watch:
            return
        time.sleep(watch)


@click.command()
@click.option("--max-latency", help="Oldest waiting job's age allowed (default 5m).")
@click.option(
    "--dead-letter-window", help="How far back new dead letters count (default 1h)."
)
@click.option(
    "--dead-letter-threshold",
    type=click.IntRange(0),
    help="New dead letters tolerated per task (default 0).",
)
@click.option(
    "--stalled-after", help="Heartbeat silence that makes a job stalled (30s)."
)
@click.option(
    "--max-dead-rows",
    type=click.IntRange(0),
    help="Dead rows tolerated in the jobs and events tables (default 100000).",
)
@click.option(
    "--max-replication-lag",
    help="Replay lag of a hot standby before it is reported (30s).",
)
@click.option(
    "--max-xmin-age",
    help="How long a transaction or replication slot may hold back the xmin "
    "horizon before it is reported (default 5m).",
)
@json_option
@pass_state
def health(
    state: State,
    max_latency: str | None,
    dead_letter_window: str | None,
    dead_letter_threshold: int | None,
    stalled_after: str | None,
    max_dead_rows: int | None,
    max_replication_lag: str | None,
    max_xmin_age: str | None,
    as_json: bool,
) -> None:
    """Report problems (view pgjobs.health); exit 1 if any.

    Exit status: 0 healthy, 1 problems found, 2 or more: the check itself
    failed (bad option or setting, database unreachable...).
    """
    try:
        options = views.MonitoringOptions.from_settings(
            state.settings,
            max_latency=_seconds(max_latency),
            dead_letter_window=_seconds(dead_letter_window),
            dead_letter_threshold=dead_letter_threshold,
            stalled_after=_seconds(stalled_after),
            max_dead_rows=max_dead_rows,
            max_replication_lag=_seconds(max_replication_lag),
            max_xmin_age=_seconds(max_xmin_age),
        )
        problems = views.health(state.settings, options)
    except PgjobsError as exc:
        # 1 means "problems found": an error that could not check says 2+.
        exc.exit_code = max(exc.exit_code, 2)
        raise
    except click.ClickException:  # a bad option: usage, exit 2
        raise
    except Exception as exc:
        error = PgjobsError(f"health check failed: {type(exc).__name__}: {exc}")
        error.exit_code = 2
        raise error from exc
    if as_json:
        print_json(problems)
    elif problems:
        print_table(
            [asdict(p) for p in problems], ["severity", "check", "subject", "detail"]
        )
    else:
        click.echo("healthy")
    if problems:
        sys.exit(1)


@click.command()
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    help="Serve /metrics on this port until stopped (0: any free port). "
    "Without it, print the metrics once.",
)
@click.option("--addr", default="0.0.0.0", show_default=True, help="Address to bind.")
@pass_state
def metrics(state: State, port: int | None, addr: str) -> None:
    """Prometheus metrics: print once, or serve /metrics with --port."""
    settings = state.settings
    if port is None:
        click.echo(metrics_module.exposition(settings), nl=False)
        return
    server, _thread = metrics_module.serve(settings, port, addr)
    click.echo(f"serving metrics on http://{addr}:{server.server_port}/metrics")
    stop = threading.Event()
    try:
        stop.wait()
    finally:
        server.shutdown()
