"""Schedules with real worker processes: one run per tick across workers,
runtime changes picked up, missed runs, run-once-after-start."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from pgjobs import Settings
from pgjobs.scheduling import schedules
from tests.support import one, wait_for
from tests.support.apps.schedules import RUNS_TABLE
from tests.support.apps.schedules import app as runtime_app

pytestmark = pytest.mark.slow

FAST = {"PGJOBS_SCHEDULE_POLL_INTERVAL": "0.2", "PGJOBS_HEARTBEAT_INTERVAL": "1"}


def runs(db: psycopg.Connection[Any], key: str) -> int:
    return int(one(db, "SELECT count(*) FROM schedule_test_runs WHERE key = %s", key))


def joined(db: psycopg.Connection[Any]) -> int:
    """Workers taking part in the current deployment of the startup task."""
    return int(
        one(
            db,
            "SELECT cardinality(worker_ids) FROM pgjobs.startup_runs "
            "WHERE name = 'sched.warm_up'",
        )
    )


def start_workers(
    db: psycopg.Connection[Any],
    worker_processes: Callable[..., subprocess.Popen[bytes]],
    app_path: str,
    count: int,
    **env: str,
) -> list[subprocess.Popen[str]]:
    before = one(db, "SELECT count(*) FROM procrastinate_workers")
    processes = [
        worker_processes("--app", app_path, **{**FAST, **env}) for _ in range(count)
    ]
    wait_for(
        lambda: one(db, "SELECT count(*) FROM procrastinate_workers") == before + count,
        what=f"{count} workers to register",
    )
    return processes


def stop(processes: list[subprocess.Popen[str]]) -> None:
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        process.wait(30)


def test_code_cron_runs_once_per_tick_with_two_workers(
    db: psycopg.Connection[Any], worker_processes: Callable[..., Any]
) -> None:
    db.execute(RUNS_TABLE)
    workers = start_workers(
        db, worker_processes, "tests.support.apps.schedules.cron_app", 2
    )
    time.sleep(4.5)
    stop(workers)

    ticks = [row[0] for row in db.execute(
        "SELECT tick FROM schedule_test_runs WHERE key = 'cron' ORDER BY tick"
    )]  # fmt: skip
    assert len(ticks) >= 3, ticks
    assert len(ticks) == len(set(ticks)), f"a tick ran twice: {ticks}"
    assert ticks[-1] - ticks[0] == len(ticks) - 1  # and none was skipped
    every2 = [row[0] for row in db.execute(
        "SELECT tick FROM schedule_test_runs WHERE key = 'every2'"
    )]  # fmt: skip
    assert every2 and len(every2) == len(set(every2))
    assert all(tick % 2 == 0 for tick in every2)
    # Run once after start: once for both workers, not once each.
    assert runs(db, "startup") == 1
    # Both code-declared periodic tasks are in the health view.
    names = {row[0] for row in db.execute("SELECT name FROM pgjobs.periodic_health")}
    assert names == {"sched.every_second", "sched.every_two_seconds"}
    assert one(
        db,
        "SELECT last_success_at IS NOT NULL FROM pgjobs.periodic_health "
        "WHERE name = 'sched.every_second'",
    )


def test_after_start_runs_once_per_deployment(
    db: psycopg.Connection[Any], worker_processes: Callable[..., Any]
) -> None:
    db.execute(RUNS_TABLE)
    cron_app = "tests.support.apps.schedules.cron_app"
    first = start_workers(db, worker_processes, cron_app, 1)
    wait_for(lambda: runs(db, "startup") == 1, what="the startup run")
    # A worker joining a live deployment does not run it again...
    second = start_workers(db, worker_processes, cron_app, 1)
    wait_for(lambda: joined(db) == 2, what="the second worker to join")
    stop(first)
    # ...nor does one starting while a worker of the deployment still lives.
    third = start_workers(db, worker_processes, cron_app, 1)
    wait_for(lambda: joined(db) == 2, what="the third worker to join")
    time.sleep(1)
    assert runs(db, "startup") == 1
    stop(second + third)
    # All workers gone: the next start is a new deployment.
    fourth = start_workers(db, worker_processes, cron_app, 1)
    wait_for(lambda: runs(db, "startup") == 2, what="the second startup run")
    stop(fourth)
    # With PGJOBS_DEPLOYMENT_ID: once per deployment id, across restarts.
    v7 = {"PGJOBS_DEPLOYMENT_ID": "v7"}
    fifth = start_workers(db, worker_processes, cron_app, 1, **v7)
    wait_for(lambda: runs(db, "startup") == 3, what="the v7 startup run")
    stop(fifth)
    sixth = start_workers(db, worker_processes, cron_app, 1, **v7)
    time.sleep(1.5)
    stop(sixth)
    assert runs(db, "startup") == 3


def test_runtime_changes_are_picked_up_by_running_workers(
    db: psycopg.Connection[Any],
    worker_processes: Callable[..., Any],
    settings: Settings,
) -> None:
    db.execute(RUNS_TABLE)
    workers = start_workers(db, worker_processes, "tests.support.apps.schedules.app", 2)
    app = runtime_app
    added_at = time.monotonic()
    schedules.add_schedule(
        settings, app, "rt", "sched.record", cron="* * * * * *", args={"key": "rt"}
    )
    wait_for(lambda: runs(db, "rt") >= 1, what="the first run", timeout=5)
    assert time.monotonic() - added_at < 2.5  # next second + poll interval
    wait_for(lambda: runs(db, "rt") >= 3, what="three runs", timeout=10)

    schedules.pause_schedule(settings, "rt")
    idle = (
        "SELECT count(*) = 0 FROM procrastinate_jobs WHERE status IN ('todo','doing')"
    )
    wait_for(lambda: one(db, idle), what="the queue to drain")
    paused_runs = runs(db, "rt")
    time.sleep(2)
    assert runs(db, "rt") == paused_runs

    schedules.resume_schedule(settings, "rt")
    schedules.update_schedule(settings, app, "rt", args={"key": "rt2"})
    wait_for(lambda: runs(db, "rt2") >= 2, what="runs with the new args", timeout=10)

    schedules.remove_schedule(settings, "rt")
    wait_for(lambda: one(db, idle), what="the queue to drain")
    removed_runs = runs(db, "rt") + runs(db, "rt2")
    time.sleep(2)
    assert runs(db, "rt") + runs(db, "rt2") == removed_runs
    stop(workers)
    # Two workers, one job per tick: as many runs as distinct jobs.
    assert removed_runs == one(db, "SELECT count(*) FROM procrastinate_jobs")
    assert (
        one(db, "SELECT count(*) FROM procrastinate_jobs WHERE status <> 'succeeded'")
        == 0
    )


def test_missed_runs_policy_with_a_worker(
    db: psycopg.Connection[Any],
    worker_processes: Callable[..., Any],
    settings: Settings,
) -> None:
    db.execute(RUNS_TABLE)
    if one(db, "SELECT now() - date_trunc('hour', now()) < interval '20 s'"):
        pytest.skip("too close to the hour for a deterministic count")
    for policy in ("skip", "once", "all"):
        schedules.add_schedule(
            settings,
            runtime_app,
            policy,
            "sched.record",
            interval_seconds=3600,
            args={"key": policy},
            missed_runs=policy,
        )
    # No worker ran for 5 hours: the last tick seen was 4 hours before this one.
    db.execute(
        "UPDATE pgjobs.schedules "
        "SET next_run_at = date_trunc('hour', now()) - interval '4 hours'"
    )
    workers = start_workers(db, worker_processes, "tests.support.apps.schedules.app", 1)
    wait_for(lambda: runs(db, "once") + runs(db, "all") == 6, what="catch-up runs")
    time.sleep(1)
    stop(workers)
    assert (runs(db, "skip"), runs(db, "once"), runs(db, "all")) == (0, 1, 5)
