"""Retry policies, error history and dead letters on failure (R1, R2, E5)."""

from __future__ import annotations

import datetime
from typing import Any

import psycopg
import pytest

from pgjobs import (
    App,
    FailNow,
    InvalidJobOptions,
    RetryIn,
    RetryPolicy,
    get_job,
    report_progress,
)
from pgjobs.failures import dead_letters
from tests.support import one, run_worker


def test_delay_formula_and_jitter_bounds() -> None:
    policy = RetryPolicy(base_delay=2, factor=3, max_delay=50, jitter="none")
    assert [policy.raw_delay(n) for n in (1, 2, 3, 4, 5)] == [2, 6, 18, 50, 50]
    assert [policy.delay(n) for n in (1, 2, 3)] == [2, 6, 18]
    for jitter, low_share in (("full", 0.0), ("equal", 0.5)):
        jittered = RetryPolicy(base_delay=2, factor=3, max_delay=50, jitter=jitter)  # type: ignore[arg-type]
        for attempt in (1, 2, 3, 4):
            raw = jittered.raw_delay(attempt)
            samples = [jittered.delay(attempt) for _ in range(300)]
            assert all(raw * low_share <= s <= raw for s in samples)
            assert max(samples) - min(samples) > raw * 0.2  # really random
    # A huge attempt number neither overflows nor exceeds the cap.
    assert RetryPolicy(max_delay=60).raw_delay(10_000) == 60


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="jitter"):
        RetryPolicy(jitter="some")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="factor"):
        RetryPolicy(factor=0.5)


def job_row(db: psycopg.Connection[Any], job_id: int) -> tuple[Any, ...]:
    return one(
        db,
        "SELECT status::text, attempts FROM procrastinate_jobs WHERE id = %s",
        job_id,
    )


async def test_permanent_error_is_dead_lettered_after_one_attempt(
    app: App, db: psycopg.Connection[Any]
) -> None:
    @app.task(
        name="t.charge",
        retry=RetryPolicy(max_attempts=5, give_up_on=(PermissionError,)),
    )
    def charge(order_id: int) -> None:
        raise PermissionError(f"card of order {order_id} refused")

    job_id = app.enqueue(db, "t.charge", {"order_id": 7})
    assert job_id is not None
    await run_worker(app)

    assert job_row(db, job_id) == ("failed", 1)
    [letter] = dead_letters.list_dead_letters(db)
    assert (letter.job_id, letter.task_name, letter.args) == (
        job_id,
        "t.charge",
        {"order_id": 7},
    )
    assert (letter.attempts, letter.error_type) == (1, "PermissionError")
    assert letter.error_message == "card of order 7 refused"
    assert letter.traceback and "PermissionError" in letter.traceback
    assert letter.replayed_at is None
    status = get_job(db, job_id)
    assert status.status == "failed" and status.attempts == 1
    assert [(e.attempt, e.error_type) for e in status.errors] == [
        (1, "PermissionError")
    ]
    assert status.errors[0].worker_id is not None
    assert status.created_at and status.started_at and status.finished_at


async def test_transient_error_retries_with_growing_jittered_delays(
    app: App, db: psycopg.Connection[Any]
) -> None:
    policy = RetryPolicy(
        max_attempts=4,
        base_delay=10,
        factor=2,
        max_delay=30,
        jitter="equal",
        retry_on=(ConnectionError, TimeoutError),
    )

    @app.task(name="t.sync_data", retry=policy)
    def sync_data() -> None:
        raise ConnectionError("upstream reset the connection")

    job_id = app.enqueue(db, "t.sync_data")
    delays = []
    for attempt in (1, 2, 3):
        await run_worker(app)
        status, attempts = job_row(db, job_id)
        assert (status, attempts) == ("todo", attempt)
        scheduled_at, failed_at = one(
            db,
            "SELECT j.scheduled_at, e.failed_at FROM procrastinate_jobs j "
            "JOIN pgjobs.job_errors e ON e.job_id = j.id "
            "WHERE j.id = %s AND e.attempt = %s",
            job_id,
            attempt,
        )
        delay = (scheduled_at - failed_at).total_seconds()
        low, high = policy.delay_bounds(attempt)
        assert low - 1 <= delay <= high + 0.1, (attempt, delay, low, high)
        delays.append(delay)
        # Time travel: make the retry due now.
        db.execute(
            "UPDATE procrastinate_jobs SET scheduled_at = now() WHERE id = %s",
            (job_id,),
        )
    # Bounds [5, 10], [10, 20], [15, 30]: each delay at least the previous floor.
    assert delays[0] <= 10.1 and 9 <= delays[1] <= 20.1 and delays[2] >= 14

    await run_worker(app)  # fourth and last attempt
    assert job_row(db, job_id) == ("failed", 4)
    errors = get_job(db, job_id).errors
    assert [e.attempt for e in errors] == [1, 2, 3, 4]
    assert {e.error_type for e in errors} == {"ConnectionError"}
    [letter] = dead_letters.list_dead_letters(db)
    assert letter.attempts == 4
    assert letter.first_failed_at == errors[0].failed_at
    assert letter.last_failed_at == errors[-1].failed_at


async def test_error_not_in_retry_on_fails_at_once(
    app: App, db: psycopg.Connection[Any]
) -> None:
    @app.task(
        name="t.lookup", retry=RetryPolicy(max_attempts=5, retry_on=(ConnectionError,))
    )
    def lookup() -> None:
        raise KeyError("customer 42 not found")

    job_id = app.enqueue(db, "t.lookup")
    await run_worker(app)
    assert job_row(db, job_id) == ("failed", 1)
    assert dead_letters.list_dead_letters(db)[0].error_type == "KeyError"


async def test_retry_in_and_fail_now(app: App, db: psycopg.Connection[Any]) -> None:
    # retry_on excludes everything: RetryIn is honoured anyway.
    policy = RetryPolicy(max_attempts=3, retry_on=(ConnectionError,))

    @app.task(name="t.rate_limited", retry=policy)
    def rate_limited() -> None:
        raise RetryIn(120, "HTTP 429, Retry-After: 120")

    @app.task(name="t.invalid", retry=RetryPolicy(max_attempts=5))
    def invalid() -> None:
        raise FailNow("payload refers to a deleted account")

    limited = app.enqueue(db, "t.rate_limited")
    doomed = app.enqueue(db, "t.invalid")
    before = datetime.datetime.now(datetime.UTC)
    await run_worker(app)

    assert job_row(db, limited) == ("todo", 1)
    scheduled_at = one(
        db, "SELECT scheduled_at FROM procrastinate_jobs WHERE id = %s", limited
    )
    assert 119 <= (scheduled_at - before).total_seconds() <= 125
    assert get_job(db, limited).errors[0].error_type == "RetryIn"

    assert job_row(db, doomed) == ("failed", 1)
    [letter] = dead_letters.list_dead_letters(db)
    assert (letter.job_id, letter.error_type) == (doomed, "FailNow")

    # RetryIn stops at max_attempts like any retry.
    for _ in range(2):
        db.execute(
            "UPDATE procrastinate_jobs SET scheduled_at = now() WHERE id = %s",
            (limited,),
        )
        await run_worker(app)
    assert job_row(db, limited) == ("failed", 3)


async def test_app_default_policy_and_no_policy(
    settings: Any, db: psycopg.Connection[Any]
) -> None:
    app = App(
        settings=settings,
        retry=RetryPolicy(max_attempts=2, base_delay=0, jitter="none"),
    )

    @app.task(name="t.default")
    def default() -> None:
        raise ValueError("x")

    @app.task(name="t.once", retry=RetryPolicy(max_attempts=1))
    def once() -> None:
        raise ValueError("y")

    a = app.enqueue(db, "t.default")
    b = app.enqueue(db, "t.once")
    await run_worker(app)
    assert job_row(db, a) == ("failed", 2)
    assert job_row(db, b) == ("failed", 1)


async def test_success_writes_no_failure_rows_and_progress_is_reported(
    app: App, db: psycopg.Connection[Any]
) -> None:
    @app.task(name="t.report", pass_context=True)
    def report(context: Any, items: int) -> None:
        for done in range(1, items + 1):
            report_progress(context, 100 * done / items, f"{done}/{items} items")

    job_id = app.enqueue(db, "t.report", {"items": 4})
    await run_worker(app)
    status = get_job(db, job_id)
    assert (status.status, status.attempts, status.progress) == ("succeeded", 1, 100)
    assert status.progress_message == "4/4 items"
    assert status.errors == []
    assert one(db, "SELECT count(*) FROM pgjobs.job_errors") == 0
    assert one(db, "SELECT count(*) FROM pgjobs.dead_letters") == 0


def test_progress_out_of_range_is_refused(app: App) -> None:
    from procrastinate import JobContext, jobs

    context = JobContext(
        app=app,
        job=jobs.Job(id=1, queue="q", lock=None, queueing_lock=None, task_name="t"),
        start_timestamp=0.0,
        abort_reason=lambda: None,
    )
    with pytest.raises(InvalidJobOptions, match="between 0 and 100"):
        report_progress(context, 101)


def test_job_admin_errors(db: psycopg.Connection[Any]) -> None:
    from pgjobs import InvalidJobState, JobNotFound
    from pgjobs.admin import jobs

    job_id = one(
        db,
        "INSERT INTO procrastinate_jobs (queue_name, task_name) VALUES ('q', 't') "
        "RETURNING id",
    )
    for call in (jobs.get_job, jobs.cancel_job, jobs.retry_job):
        with pytest.raises(JobNotFound, match="no job with id 999999"):
            call(db, 999999)
    assert jobs.cancel_job(db, job_id).outcome == "cancelled"
    with pytest.raises(InvalidJobState, match="is cancelled: nothing to cancel"):
        jobs.cancel_job(db, job_id)
    with pytest.raises(InvalidJobState, match="only failed jobs"):
        jobs.retry_job(db, job_id)
    with pytest.raises(InvalidJobOptions, match="unknown status"):
        jobs.list_jobs(db, status="lost")
    assert [
        j.id for j in jobs.list_jobs(db, task="t", queue="q", status="cancelled")
    ] == [job_id]
