"""Circuit breakers shared by all workers (R5)."""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from pgjobs import App, Breaker, BreakerNotFound, BreakerOpen, RetryPolicy, get_job
from pgjobs.failures import breakers as breakers_module
from tests.support import one, run_worker, wait_for
from tests.support.apps.failures import RUNS_TABLE


def state(db: psycopg.Connection[Any], name: str) -> tuple[Any, ...]:
    return one(
        db, "SELECT state, failure_count FROM pgjobs.breakers WHERE name = %s", name
    )


async def test_state_machine(app: App, db: psycopg.Connection[Any]) -> None:
    breaker = Breaker(
        "mail", failure_threshold=2, recovery_window=0.5, success_threshold=2
    )
    async with app.open_async():
        connector = app.connector
        await breaker.acquire_async(connector)
        assert state(db, "mail") == ("closed", 0)
        await breaker.record_async(connector, OSError("refused"))
        await breaker.record_async(connector, None)  # success resets the count
        assert state(db, "mail") == ("closed", 0)
        await breaker.record_async(connector, OSError("refused"))
        await breaker.record_async(connector, OSError("refused"))
        assert state(db, "mail") == ("open", 2)
        with pytest.raises(BreakerOpen) as refused:
            await breaker.acquire_async(connector)
        opened_at, reopens_at = one(
            db, "SELECT opened_at, reopens_at FROM pgjobs.breakers WHERE name = 'mail'"
        )
        assert refused.value.retry_at == reopens_at
        assert reopens_at - opened_at == datetime.timedelta(seconds=0.5)

        await asyncio.sleep(0.6)
        await breaker.acquire_async(connector)  # trial 1
        await breaker.acquire_async(connector)  # trial 2
        assert state(db, "mail")[0] == "half_open"
        with pytest.raises(BreakerOpen):  # no third trial while two run
            await breaker.acquire_async(connector)
        await breaker.record_async(connector, None)
        assert state(db, "mail")[0] == "half_open"
        await breaker.record_async(connector, None)
        assert state(db, "mail") == ("closed", 0)

        # A failed trial opens it again at once.
        await breaker.record_async(connector, OSError("x"))
        await breaker.record_async(connector, OSError("x"))
        await asyncio.sleep(0.6)
        await breaker.acquire_async(connector)
        await breaker.record_async(connector, OSError("still down"))
        assert state(db, "mail")[0] == "open"
        last_error = one(
            db, "SELECT last_error FROM pgjobs.breakers WHERE name = 'mail'"
        )
        assert last_error == "OSError: still down"


async def test_task_option_reschedules_without_consuming_attempts(
    app: App, db: psycopg.Connection[Any]
) -> None:
    app.breaker("payments-api", failure_threshold=2, recovery_window=120)
    calls = []

    @app.task(
        name="t.charge",
        breaker="payments-api",
        retry=RetryPolicy(max_attempts=3, base_delay=0, jitter="none"),
    )
    def charge(order_id: int) -> None:
        calls.append(order_id)
        raise ConnectionError("payments api unreachable")

    first = app.enqueue(db, "t.charge", {"order_id": 1})
    await run_worker(app)
    # Two real attempts opened the breaker; the third was re-scheduled.
    assert calls == [1, 1]
    status = get_job(db, first)
    assert (status.status, status.attempts) == ("todo", 2)
    assert [e.error_type for e in status.errors] == ["ConnectionError"] * 2
    reopens_at = one(
        db, "SELECT reopens_at FROM pgjobs.breakers WHERE name = 'payments-api'"
    )
    assert status.scheduled_at == reopens_at

    # New jobs never run and lose nothing while it is open.
    others = app.enqueue_many(db, "t.charge", [{"order_id": n} for n in (2, 3, 4)])
    for _ in range(3):
        await run_worker(app)
        db.execute(
            "UPDATE procrastinate_jobs SET scheduled_at = now() WHERE id = ANY(%s)",
            (others,),
        )
    assert calls == [1, 1]
    assert one(
        db,
        "SELECT array_agg(DISTINCT attempts) FROM procrastinate_jobs WHERE id = ANY(%s)",
        others,
    ) == [0]
    assert one(db, "SELECT count(*) FROM pgjobs.dead_letters") == 0
    assert (
        one(db, "SELECT count(*) FROM procrastinate_jobs WHERE status = 'failed'") == 0
    )


async def test_guard_in_sync_and_async_tasks(
    app: App, db: psycopg.Connection[Any]
) -> None:
    crm = app.breaker("crm", failure_threshold=1, recovery_window=60)
    outcomes: list[str] = []

    @app.task(name="t.sync_call", retry=RetryPolicy(max_attempts=5, base_delay=0))
    def sync_call(ok: bool) -> None:
        with crm.guard():
            outcomes.append(f"sync ran ok={ok}")
            if not ok:
                raise ConnectionError("crm 503")

    @app.task(name="t.async_call", retry=RetryPolicy(max_attempts=5, base_delay=0))
    async def async_call() -> None:
        async with app.breaker("crm").guard():
            outcomes.append("async ran")

    @crm.guard()
    def decorated() -> str:
        return "ok"

    @app.task(name="t.decorated")
    def uses_decorated() -> None:
        outcomes.append(decorated())

    app.enqueue(db, "t.sync_call", {"ok": True})
    await run_worker(app)
    assert outcomes == ["sync ran ok=True"]
    failing = app.enqueue(db, "t.sync_call", {"ok": False})
    await run_worker(app)
    assert state(db, "crm")[0] == "open"
    # Rescheduled for the reopening, one attempt spent (the real failure).
    assert get_job(db, failing).status == "todo" and get_job(db, failing).attempts == 1
    blocked = [app.enqueue(db, "t.async_call"), app.enqueue(db, "t.decorated")]
    await run_worker(app)
    assert outcomes == ["sync ran ok=True", "sync ran ok=False"]
    for job_id in blocked:
        job = get_job(db, job_id)
        assert (job.status, job.attempts) == ("todo", 0)

    breakers_module.reset_breaker(db, "crm")
    db.execute(
        "UPDATE procrastinate_jobs SET scheduled_at = now() WHERE id = ANY(%s)",
        (blocked,),
    )
    await run_worker(app)
    assert "async ran" in outcomes and "ok" in outcomes


def test_admin_api_errors(db: psycopg.Connection[Any]) -> None:
    with pytest.raises(BreakerNotFound, match="nope"):
        breakers_module.reset_breaker(db, "nope")
    with pytest.raises(BreakerNotFound):
        breakers_module.get_breaker(db, "nope")
    assert breakers_module.list_breakers(db) == []


@pytest.mark.slow
async def test_breaker_opened_by_one_worker_process_stops_another(
    app: App,
    db: psycopg.Connection[Any],
    worker_processes: Callable[..., Any],
) -> None:
    db.execute(RUNS_TABLE)
    from tests.support.apps.failures import app as process_app

    # Process 1: a real worker whose calls to the API fail: opens the breaker.
    worker = worker_processes("--app", "tests.support.apps.failures.app", "-q", "api")
    job_id = process_app.enqueue(db, "failures.flaky_api", {"key": "a"}, queue="api")
    wait_for(
        lambda: one(
            db,
            "SELECT status = 'todo' AND scheduled_at > now() FROM procrastinate_jobs "
            "WHERE id = %s",
            job_id,
        ),
        what="the worker process to open the breaker and re-schedule its job",
    )
    assert state(db, "flaky-api") == ("open", 2)
    worker.kill()

    # This process (another worker) sees it open: the job does not run.
    app.breaker("flaky-api", failure_threshold=2, recovery_window=300)
    ran = []

    @app.task(name="t.same_api", breaker="flaky-api")
    def same_api() -> None:
        ran.append(1)

    mine = app.enqueue(db, "t.same_api")
    started = time.monotonic()
    await run_worker(app, queues=["default"])
    assert ran == [] and time.monotonic() - started < 10
    job = get_job(db, mine)
    assert (job.status, job.attempts) == ("todo", 0)
    reopens_at = one(
        db, "SELECT reopens_at FROM pgjobs.breakers WHERE name = 'flaky-api'"
    )
    assert job.scheduled_at == reopens_at
    flaky = get_job(db, job_id)
    assert flaky.attempts == 2 and flaky.status == "todo"  # rescheduled, not failed
