"""Per-job timeouts (R3): a timed-out attempt is a failure, never a success."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import psycopg
import pytest

from pgjobs import App, RetryPolicy, Settings, deadline_passed, get_job
from pgjobs.errors import InvalidJobOptions
from pgjobs.failures import dead_letters
from tests.support import one, run_worker


async def test_async_task_is_cancelled_at_its_deadline(
    app: App, db: psycopg.Connection[Any]
) -> None:
    cancelled = asyncio.Event()

    @app.task(name="t.slow_async", timeout=0.3)
    async def slow_async() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    job_id = app.enqueue(db, "t.slow_async")
    started = time.monotonic()
    await run_worker(app)
    assert time.monotonic() - started < 10
    assert cancelled.is_set()
    status = get_job(db, job_id)
    assert (status.status, status.attempts) == ("failed", 1)
    [error] = status.errors
    assert error.error_type == "JobTimeout"
    assert "0.3 s timeout" in error.error_message
    assert dead_letters.list_dead_letters(db)[0].error_type == "JobTimeout"


async def test_timeout_follows_the_retry_policy(
    app: App, db: psycopg.Connection[Any]
) -> None:
    runs = []

    @app.task(
        name="t.hangs",
        timeout=0.2,
        retry=RetryPolicy(max_attempts=3, base_delay=0, retry_on=(TimeoutError,)),
    )
    async def hangs() -> None:
        runs.append(1)
        if len(runs) < 3:
            await asyncio.sleep(30)

    job_id = app.enqueue(db, "t.hangs")
    await run_worker(app)
    status = get_job(db, job_id)
    assert (status.status, status.attempts) == ("succeeded", 3)
    assert [e.error_type for e in status.errors] == ["JobTimeout", "JobTimeout"]


async def test_sync_task_timed_out_is_failed_and_its_late_result_discarded(
    app: App, db: psycopg.Connection[Any]
) -> None:
    finished = threading.Event()

    @app.task(name="t.slow_sync", timeout=0.3)
    def slow_sync() -> str:
        time.sleep(2.5)  # cannot be interrupted
        finished.set()
        return "late result"

    job_id = app.enqueue(db, "t.slow_sync")
    await run_worker(app)
    assert not finished.is_set()  # the attempt ended while the thread ran
    assert get_job(db, job_id).status == "failed"
    await asyncio.to_thread(finished.wait, 5)
    assert finished.is_set()
    await asyncio.sleep(0.2)
    status = get_job(db, job_id)
    assert (status.status, status.attempts) == ("failed", 1)  # never a success
    assert [e.error_type for e in status.errors] == ["JobTimeout"]
    assert (
        one(
            db,
            "SELECT count(*) FROM procrastinate_events WHERE job_id = %s AND type = 'succeeded'",
            job_id,
        )
        == 0
    )


async def test_cooperative_sync_task_stops_at_its_deadline(
    app: App, db: psycopg.Connection[Any]
) -> None:
    stopped_early = threading.Event()

    @app.task(name="t.batch", timeout=0.3, pass_context=True)
    def batch(context: Any) -> None:
        for _ in range(300):
            if deadline_passed(context):
                stopped_early.set()
                return
            time.sleep(0.01)

    job_id = app.enqueue(db, "t.batch")
    await run_worker(app)
    await asyncio.to_thread(stopped_early.wait, 5)
    assert stopped_early.is_set()
    assert get_job(db, job_id).status == "failed"


async def test_app_default_timeout(
    settings: Settings, db: psycopg.Connection[Any]
) -> None:
    app = App(settings=settings, timeout=0.2)

    @app.task(name="t.default_timeout")
    async def default_timeout() -> None:
        await asyncio.sleep(30)

    @app.task(name="t.own_timeout", timeout=5)
    async def own_timeout() -> None:
        await asyncio.sleep(0.5)

    a = app.enqueue(db, "t.default_timeout")
    b = app.enqueue(db, "t.own_timeout")
    await run_worker(app, concurrency=2)
    assert get_job(db, a).status == "failed"
    assert get_job(db, b).status == "succeeded"


async def test_tasks_own_timeout_error_is_not_a_job_timeout(
    app: App, db: psycopg.Connection[Any]
) -> None:
    @app.task(name="t.socket", timeout=10)
    async def socket() -> None:
        raise TimeoutError("read timed out")

    job_id = app.enqueue(db, "t.socket")
    await run_worker(app)
    assert get_job(db, job_id).errors[0].error_type == "TimeoutError"


def test_timeout_must_be_positive(app: App) -> None:
    with pytest.raises(InvalidJobOptions, match="timeout"):

        @app.task(name="t.bad", timeout=0)
        def bad() -> None: ...
