"""Stalled jobs (R6): a SIGKILLed worker's job is rescued by another worker."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from pgjobs import App, RetryPolicy, Settings, get_job
from pgjobs.failures import dead_letters
from pgjobs.failures.stalled import rescue_stalled_jobs
from tests.support import one, wait_for
from tests.support.apps.failures import RUNS_TABLE

FAST_HEARTBEATS = {
    "PGJOBS_HEARTBEAT_INTERVAL": "0.3",
    "PGJOBS_STALLED_AFTER": "2",
    "PGJOBS_STALLED_CHECK_INTERVAL": "0.3",
}


@pytest.mark.slow
def test_sigkilled_worker_job_is_completed_by_another_worker(
    db: psycopg.Connection[Any], worker_processes: Callable[..., Any]
) -> None:
    db.execute(RUNS_TABLE)
    from tests.support.apps.failures import app

    args = ("--app", "tests.support.apps.failures.app", "-c", "1")
    doomed = worker_processes(*args, **FAST_HEARTBEATS)
    job_id = app.enqueue(db, "failures.slow_first_attempt", {"key": "k", "sleep": 600})
    lost_worker = wait_for(
        lambda: one(
            db,
            "SELECT worker_id FROM procrastinate_jobs WHERE id = %s AND status = 'doing'",
            job_id,
        ),
        what="the first worker to start the job",
    )
    survivor = worker_processes(*args, **FAST_HEARTBEATS)
    wait_for(
        lambda: one(db, "SELECT count(*) FROM procrastinate_workers") == 2,
        what="the second worker",
    )
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(10)

    wait_for(
        lambda: (
            one(db, "SELECT status::text FROM procrastinate_jobs WHERE id = %s", job_id)
            == "succeeded"
        ),
        timeout=30,
        what="the surviving worker to rescue and complete the job",
    )
    assert survivor.poll() is None
    job = get_job(db, job_id)
    assert job.attempts == 2
    [error] = job.errors
    assert (error.error_type, error.attempt, error.worker_id) == (
        "WorkerLost",
        1,
        lost_worker,
    )
    assert f"worker {lost_worker} stopped sending heartbeats" in error.error_message
    assert one(db, "SELECT count(*) FROM test_runs WHERE key = 'k'") == 1
    assert dead_letters.list_dead_letters(db) == []


@pytest.mark.slow
def test_sigkilled_worker_prefetched_jobs_go_back_without_an_attempt(
    db: psycopg.Connection[Any], worker_processes: Callable[..., Any]
) -> None:
    db.execute(RUNS_TABLE)
    from tests.support.apps.failures import app

    running = app.enqueue(db, "failures.slow_first_attempt", {"key": "a", "sleep": 600})
    held = [
        app.enqueue(db, "failures.slow_first_attempt", {"key": key, "sleep": 0})
        for key in ("b", "c")
    ]
    db.commit()
    args = ("--app", "tests.support.apps.failures.app", "-c", "1", "--prefetch", "2")
    doomed = worker_processes(*args, **FAST_HEARTBEATS)
    # One claim: the first job runs, the other two wait in the worker.
    wait_for(
        lambda: (
            one(db, "SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing'")
            == 3
        ),
        what="the first worker to claim all three jobs",
    )
    assert one(
        db, "SELECT array_agg(job_id) FROM procrastinate_events WHERE type = 'started'"
    ) == [running]
    survivor = worker_processes(*args[:-2], **FAST_HEARTBEATS)
    wait_for(
        lambda: one(db, "SELECT count(*) FROM procrastinate_workers") == 2,
        what="the second worker",
    )
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(10)

    wait_for(
        lambda: (
            one(
                db,
                "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'",
            )
            == 3
        ),
        timeout=30,
        what="the surviving worker to rescue and complete the jobs",
    )
    assert survivor.poll() is None
    job = get_job(db, running)
    assert job.attempts == 2
    assert [e.error_type for e in job.errors] == ["WorkerLost"]
    for job_id in held:
        job = get_job(db, job_id)
        assert (job.attempts, job.errors) == (1, [])
    assert one(db, "SELECT array_agg(key ORDER BY key) FROM test_runs") == [
        "a",
        "b",
        "c",
    ]
    assert dead_letters.list_dead_letters(db) == []


def stalled_jobs(db: psycopg.Connection[Any], task: str, count: int) -> list[int]:
    """Jobs 'doing' on a worker whose last heartbeat is a minute old."""
    worker_id = one(
        db,
        "INSERT INTO procrastinate_workers (last_heartbeat) "
        "VALUES (now() - interval '1 minute') RETURNING id",
    )
    return [
        one(
            db,
            "INSERT INTO procrastinate_jobs (queue_name, task_name, status, worker_id) "
            "VALUES ('default', %s, 'doing', %s) RETURNING id",
            task,
            worker_id,
        )
        for _ in range(count)
    ]


async def test_two_rescuers_never_rescue_a_job_twice(
    settings: Settings, db: psycopg.Connection[Any]
) -> None:
    apps = [App(settings=settings), App(settings=settings)]
    for app in apps:
        app.task(name="t.work", retry=RetryPolicy(max_attempts=3, base_delay=60))(
            lambda: None
        )
    ids = stalled_jobs(db, "t.work", 30)
    # A live worker's job is left alone.
    alive = one(db, "INSERT INTO procrastinate_workers DEFAULT VALUES RETURNING id")
    busy = one(
        db,
        "INSERT INTO procrastinate_jobs (queue_name, task_name, status, worker_id) "
        "VALUES ('default', 't.work', 'doing', %s) RETURNING id",
        alive,
    )
    async with apps[0].open_async(), apps[1].open_async():
        results = await asyncio.gather(
            *(rescue_stalled_jobs(app, stalled_after=5) for app in apps)
        )
    rescued = sorted(r.job_id for result in results for r in result)
    assert rescued == sorted(ids)
    assert one(db, "SELECT count(*) FROM pgjobs.job_errors") == 30
    assert one(db, "SELECT count(DISTINCT job_id) FROM pgjobs.job_errors") == 30
    assert one(
        db,
        "SELECT array_agg(DISTINCT status::text) FROM procrastinate_jobs WHERE id = ANY(%s)",
        ids,
    ) == ["todo"]
    assert (
        one(db, "SELECT status::text FROM procrastinate_jobs WHERE id = %s", busy)
        == "doing"
    )


async def test_lost_job_without_attempts_left_is_dead_lettered(
    app: App, db: psycopg.Connection[Any]
) -> None:
    @app.task(name="t.once")
    def once() -> None: ...

    [job_id] = stalled_jobs(db, "t.once", 1)
    async with app.open_async():
        [rescued] = await rescue_stalled_jobs(app, stalled_after=5)
    assert (rescued.job_id, rescued.status) == (job_id, "failed")
    [letter] = dead_letters.list_dead_letters(db)
    assert (letter.job_id, letter.error_type, letter.attempts) == (
        job_id,
        "WorkerLost",
        1,
    )
    assert rescued.dead_letter_id == letter.id
