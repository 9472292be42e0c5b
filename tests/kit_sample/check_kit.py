"""A user's test file for the pytest kit: run by tests/testing/test_kit.py in
a pytest subprocess (the plugin comes from pgjobs' entry point). Test names
ending in ``_must_fail`` are expected to fail."""

from __future__ import annotations

import psycopg
import pytest
from shop import always_fails, app, close_day, place_order, send_confirmation, sync_crm

from pgjobs.testing import (
    assert_enqueued,
    assert_not_enqueued,
    enqueued_jobs,
    run_jobs,
    run_jobs_async,
)


def test_enqueued_inside_the_transaction(pgjobs_db: str) -> None:
    with psycopg.connect(pgjobs_db) as conn:
        place_order(conn, 42, "a@example.com")
        # Seen on the caller's connection before commit...
        job = assert_enqueued(conn, send_confirmation, order_id=42)
        assert job.queue_name == "emails"
        # ...and by name, with every argument.
        assert_enqueued(
            conn, "shop.send_confirmation", order_id=42, email="a@example.com"
        )
        # Not yet committed: invisible on the URL.
        assert enqueued_jobs(pgjobs_db) == []
    assert [j.args for j in enqueued_jobs(pgjobs_db, send_confirmation)] == [
        {"order_id": 42, "email": "a@example.com"}
    ]


def test_rollback_leaves_nothing(pgjobs_db: str) -> None:
    with psycopg.connect(pgjobs_db) as conn:
        place_order(conn, 7, "b@example.com")
        conn.rollback()
    assert_not_enqueued(pgjobs_db, send_confirmation)


def test_each_test_gets_a_fresh_database(pgjobs_db: str) -> None:
    assert enqueued_jobs(pgjobs_db, status=None) == []


def test_run_jobs_outcomes(pgjobs_db: str) -> None:
    with psycopg.connect(pgjobs_db) as conn:
        place_order(conn, 1, "ok@example.com")
        place_order(conn, 2, "not-an-address")
        app.enqueue(conn, sync_crm, {"customer_id": 5})
        app.enqueue(conn, always_fails, {"customer_id": 6})
        app.enqueue(conn, close_day, {"day": "2026-12-01"}, delay=86400)
    outcomes = run_jobs(app, pgjobs_db)
    summary = [(o.task_name, o.status, o.attempts, o.error) for o in outcomes]
    assert summary == [
        ("shop.send_confirmation", "succeeded", 1, None),
        (
            "shop.send_confirmation",
            "failed",
            1,
            "ValueError: bad address 'not-an-address'",
        ),
        ("shop.sync_crm", "succeeded", 3, "ConnectionError: CRM down (attempt 2)"),
        ("shop.always_fails", "failed", 2, "RuntimeError: permanent trouble"),
        ("shop.close_day", "succeeded", 1, None),
        # enqueued by close_day while the run went on
        ("shop.send_confirmation", "succeeded", 1, None),
    ]
    assert enqueued_jobs(pgjobs_db) == []


def test_run_jobs_by_queue(pgjobs_db: str) -> None:
    with psycopg.connect(pgjobs_db) as conn:
        place_order(conn, 1, "ok@example.com")
        app.enqueue(conn, sync_crm, {"customer_id": 5})
    outcomes = run_jobs(app, pgjobs_db, queues=["emails"])
    assert [o.task_name for o in outcomes] == ["shop.send_confirmation"]
    assert_enqueued(pgjobs_db, sync_crm, customer_id=5)


async def test_run_jobs_async(pgjobs_db: str) -> None:
    with psycopg.connect(pgjobs_db) as conn:
        place_order(conn, 3, "c@example.com")
    [outcome] = await run_jobs_async(app, pgjobs_db)
    assert outcome.succeeded


def test_run_jobs_needs_committed_jobs(pgjobs_db: str) -> None:
    with psycopg.connect(pgjobs_db) as conn, pytest.raises(TypeError, match="URL"):
        run_jobs(app, conn)  # type: ignore[arg-type]


def test_wrong_argument_must_fail(pgjobs_db: str) -> None:
    with psycopg.connect(pgjobs_db) as conn:
        place_order(conn, 42, "a@example.com")
        place_order(conn, 43, "d@example.com")
        assert_enqueued(conn, send_confirmation, order_id=44, email="a@example.com")


def test_other_task_must_fail(pgjobs_db: str) -> None:
    with psycopg.connect(pgjobs_db) as conn:
        place_order(conn, 42, "a@example.com")
        assert_enqueued(conn, sync_crm, customer_id=1)
