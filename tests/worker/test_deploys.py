"""Deploys: a worker stopped while long jobs run (pgjobs.worker.interruptions).

Real ``pgjobs worker`` / ``procrastinate worker`` processes get SIGTERM with a
1 s grace while a 5 s async job and a 5 s sync job run; what the tests check
is what the database and the CLI say afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import time
from typing import Any

import psycopg
import pytest

from pgjobs import App, RetryPolicy
from pgjobs.monitoring import views
from tests.support import run_cli, wait_for
from tests.support.processes import Processes

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

APP = "tests.support.apps.deploys.app"
GRACE = 1.0
#: Exit after the grace: hand-backs, unregistering, closing the pool, exit.
MARGIN = 2.5
#: A fast stalled-job rescue, so the tests would see one that went wrong.
FAST_RESCUE = {
    "PGJOBS_HEARTBEAT_INTERVAL": "0.3",
    "PGJOBS_STALLED_AFTER": "1.5",
    "PGJOBS_STALLED_CHECK_INTERVAL": "0.3",
}


def rows(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]


def scalar(url: str, query: str, *params: Any) -> Any:
    found = rows(url, query, *params)
    return found[0][0] if found else None


def enqueue(url: str, task: str, **payload: Any) -> int:
    from tests.support.apps.deploys import app

    with psycopg.connect(url) as conn:
        job_id = app.enqueue(conn, task, payload)
        conn.commit()
    assert job_id is not None
    return job_id


def runs(url: str, job_id: int) -> int:
    return int(
        scalar(url, "SELECT count(*) FROM deploy_runs WHERE job_id = %s", job_id)
    )


def stop(
    processes: Processes,
    process: subprocess.Popen[bytes],
    timeout: float = 30,
) -> float:
    """SIGTERM; returns the seconds the process took to exit (exit code 0)."""
    began = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=timeout)
    took = time.monotonic() - began
    assert process.returncode == 0, processes.output(process)
    return took


def pgjobs_worker(grace: float = GRACE) -> tuple[str, ...]:
    return ("pgjobs", "worker", "--app", APP, "-c", "4", "--shutdown-grace", str(grace))


WORKERS = {
    "pgjobs worker": pgjobs_worker(),
    "procrastinate worker": (
        "procrastinate",
        f"--app={APP}",
        "worker",
        "--concurrency=4",
        f"--shutdown-graceful-timeout={GRACE}",
    ),
}


@pytest.mark.parametrize("command", list(WORKERS))
def test_jobs_running_at_the_end_of_the_grace_go_back_and_run_again(
    runs_db: str, processes: Processes, command: str
) -> None:
    slow_async = enqueue(runs_db, "deploys.slow_async", key="a", sleep=5, then=0.1)
    slow_sync = enqueue(runs_db, "deploys.slow_sync", key="s", sleep=5, then=0.1)
    short = enqueue(runs_db, "deploys.slow_async", key="short", sleep=0.1)
    ids = [slow_async, slow_sync]
    worker = processes.start(*WORKERS[command], **FAST_RESCUE)
    wait_for(
        lambda: runs(runs_db, slow_async) and runs(runs_db, slow_sync),
        what="both long jobs to start",
    )

    took = stop(processes, worker)

    # The grace bounds the exit, the sync job's included (it had 4 s to go).
    assert took < GRACE + MARGIN, (took, processes.output(worker))
    log = processes.output(worker)
    assert "2 job(s) still running after the 1 s shutdown grace" in log, log
    assert "Aborting them" not in log
    # Back in the queue at once, no attempt counted, not blamed.
    assert rows(
        runs_db,
        "SELECT id, status::text, attempts, worker_id, scheduled_at IS NULL"
        "  FROM procrastinate_jobs WHERE id = ANY(%s) ORDER BY id",
        ids,
    ) == [(slow_async, "todo", 0, None, True), (slow_sync, "todo", 0, None, True)]
    assert (
        scalar(
            runs_db, "SELECT status::text FROM procrastinate_jobs WHERE id = %s", short
        )
        == "succeeded"
    )
    errors = rows(
        runs_db,
        "SELECT job_id, kind, error_type, attempt FROM pgjobs.job_errors ORDER BY job_id",
    )
    assert errors == [
        (slow_async, "interruption", "WorkerShutdown", 1),
        (slow_sync, "interruption", "WorkerShutdown", 1),
    ]
    assert scalar(runs_db, "SELECT count(*) FROM pgjobs.dead_letters") == 0
    # The views and the CLI say what happened.
    stats = rows(
        runs_db,
        "SELECT task_name, interrupted, retried, failed, failure_rate"
        "  FROM pgjobs.task_stats ORDER BY task_name",
    )
    assert stats == [
        ("deploys.slow_async", 1, 0, 0, 0.0),
        ("deploys.slow_sync", 1, 0, 0, 0.0),
    ]
    tasks = {t.task_name: t for t in views.task_stats(runs_db)}
    assert tasks["deploys.slow_sync"].interrupted == 1
    shown = run_cli("jobs", "show", str(slow_sync), db_url=runs_db)
    assert shown.returncode == 0, shown.stderr
    assert (
        "attempt 1" in shown.stdout
        and "interrupted, WorkerShutdown: interrupted by worker shutdown"
        in shown.stdout
    )
    health = run_cli("health", "--json", db_url=runs_db)
    assert (health.returncode, json.loads(health.stdout)) == (0, [])

    # The next worker runs them to the end: one attempt each, policy intact.
    successor = processes.start(*pgjobs_worker(grace=30), **FAST_RESCUE)
    wait_for(
        lambda: scalar(
            runs_db,
            "SELECT count(*) = 2 FROM procrastinate_jobs"
            " WHERE id = ANY(%s) AND status = 'succeeded'",
            ids,
        ),
        what="both jobs to succeed on the next worker",
    )
    time.sleep(1.0)  # a rescue, if one were to happen, would be done by now
    stop(processes, successor)
    assert rows(
        runs_db,
        "SELECT status::text, attempts FROM procrastinate_jobs WHERE id = ANY(%s)",
        ids,
    ) == [("succeeded", 1), ("succeeded", 1)]
    assert [runs(runs_db, i) for i in ids] == [2, 2]
    # Only the interruptions: nothing was rescued as stalled, nothing failed.
    assert scalar(runs_db, "SELECT count(*) FROM pgjobs.job_errors") == 2
    assert scalar(runs_db, "SELECT count(*) FROM pgjobs.dead_letters") == 0


def test_the_heartbeat_goes_on_through_the_grace(
    runs_db: str, processes: Processes
) -> None:
    # A grace longer than the stall threshold: the other worker's rescue must
    # not take the job that is still finishing on the stopping one.
    job = enqueue(runs_db, "deploys.slow_async", key="finishing", sleep=4)
    stopping = processes.start(*pgjobs_worker(grace=10), **FAST_RESCUE)
    wait_for(lambda: runs(runs_db, job), what="the job to start")
    rescuer = processes.start(*pgjobs_worker(grace=10), **FAST_RESCUE)
    wait_for(
        lambda: scalar(runs_db, "SELECT count(*) FROM procrastinate_workers") == 2,
        what="the second worker",
    )
    # No timing assertion (the second worker's start-up under load eats into
    # the job's 4 s): one run, succeeded, no interruption row and no
    # WorkerLost error prove the stopping worker waited for the job and the
    # other worker's rescue never took it.
    stop(processes, stopping)
    stop(processes, rescuer)
    assert rows(runs_db, "SELECT status::text, attempts FROM procrastinate_jobs") == [
        ("succeeded", 1)
    ]
    assert runs(runs_db, job) == 1
    assert scalar(runs_db, "SELECT count(*) FROM pgjobs.job_errors") == 0


def test_a_job_outliving_every_grace_is_reported_and_then_follows_its_policy(
    runs_db: str, processes: Processes
) -> None:
    # PGJOBS_MAX_INTERRUPTIONS=2: the first interruption is free, the second
    # and later ones count as failed attempts (policy: 2 attempts, no delay).
    job = enqueue(runs_db, "deploys.slow_async", key="endless", sleep=60)
    env = {**FAST_RESCUE, "PGJOBS_MAX_INTERRUPTIONS": "2"}

    def interrupt(cycle: int) -> None:
        worker = processes.start(*pgjobs_worker(), **env)
        wait_for(lambda: runs(runs_db, job) == cycle, what=f"run {cycle}")
        stop(processes, worker)

    def state() -> tuple[Any, ...]:
        found = rows(
            runs_db,
            "SELECT status::text, attempts FROM procrastinate_jobs WHERE id = %s",
            job,
        )
        return found[0]

    def health() -> tuple[int, list[dict[str, Any]]]:
        result = run_cli("health", "--json", db_url=runs_db)
        return result.returncode, json.loads(result.stdout)

    interrupt(1)
    assert state() == ("todo", 0)
    assert health() == (0, [])

    interrupt(2)
    assert state() == ("todo", 1)  # counted: retried by its policy
    code, problems = health()
    assert code == 1
    assert [(p["check"], p["subject"], p["severity"]) for p in problems] == [
        ("interrupted_job", f"job {job}", "warning")
    ]
    assert "interrupted by 2 worker shutdowns" in problems[0]["detail"]
    assert rows(
        runs_db,
        "SELECT kind, error_type, attempt FROM pgjobs.job_errors ORDER BY id",
    ) == [
        ("interruption", "WorkerShutdown", 1),
        ("error", "WorkerShutdown", 1),
    ]

    interrupt(3)
    assert state() == ("failed", 2)  # its last attempt: dead-lettered
    letters = rows(
        runs_db, "SELECT job_id, error_type, attempts FROM pgjobs.dead_letters"
    )
    assert letters == [(job, "WorkerShutdown", 2)]
    code, problems = health()
    assert code == 1
    assert [p["check"] for p in problems] == ["new_dead_letters"]


async def test_an_abandoned_sync_job_that_returns_late_writes_no_outcome(
    app: App, db_url: str
) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute("CREATE TABLE late_runs (job_id bigint, ended_at timestamptz)")

    @app.task(name="late", pass_context=True, retry=RetryPolicy(max_attempts=5))
    def late(context: Any, sleep: float) -> None:
        time.sleep(sleep)
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO late_runs VALUES (%s, clock_timestamp())",
                (context.job.id,),
            )

    async with app.open_async():
        job_id = await app.configure_task("late").defer_async(sleep=2.0)
        worker = asyncio.create_task(
            app.run_worker_async(
                shutdown_graceful_timeout=0.2, install_signal_handlers=False
            )
        )
        for _ in range(200):
            if scalar(db_url, "SELECT status::text FROM procrastinate_jobs") == "doing":
                break
            await asyncio.sleep(0.05)
        began = time.monotonic()
        worker.cancel()  # a graceful stop
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        assert time.monotonic() - began < 1.5  # it did not wait for the thread
        assert scalar(db_url, "SELECT count(*) FROM late_runs") == 0
        # The abandoned thread returns meanwhile: nothing of it is written.
        for _ in range(100):
            if scalar(db_url, "SELECT count(*) FROM late_runs"):
                break
            await asyncio.sleep(0.05)
    assert scalar(db_url, "SELECT count(*) FROM late_runs") == 1
    await asyncio.sleep(0.3)
    assert rows(
        db_url, "SELECT id, status::text, attempts, worker_id FROM procrastinate_jobs"
    ) == [(job_id, "todo", 0, None)]
    assert rows(
        db_url,
        "SELECT type::text FROM procrastinate_events WHERE job_id = %s ORDER BY id",
        job_id,
    ) == [("deferred",), ("started",), ("deferred_for_retry",)]
