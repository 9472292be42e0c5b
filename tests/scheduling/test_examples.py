"""The schedule examples run end to end against a real database."""

from __future__ import annotations

import pytest

from tests.support import rows, run_example

pytestmark = pytest.mark.slow


def test_daily_maintenance(db_url: str) -> None:
    out = run_example("examples.daily_maintenance", db_url)
    assert "daily maintenance: 2 processed, 1 error(s) in" in out
    assert rows(
        db_url,
        "SELECT title, archived_at IS NOT NULL FROM examples_documents ORDER BY id",
    ) == [("Q1 plan", True), (None, False), ("Q2 plan", True), ("This week", False)]
    # The example's own job. Within procrastinate's 10-minute max_delay after
    # midnight UTC the worker's scheduler also defers the real 00:00 tick, as
    # it should (a CI run at 00:05 saw it left 'todo' when the drain ended).
    assert rows(
        db_url,
        "SELECT status::text FROM procrastinate_jobs WHERE id NOT IN"
        " (SELECT job_id FROM procrastinate_periodic_defers"
        "   WHERE job_id IS NOT NULL)",
    ) == [("succeeded",)]


def test_weekly_report(db_url: str) -> None:
    out = run_example("examples.weekly_report", db_url)
    assert "visitors: unavailable (ConnectionError: analytics.example.com" in out
    assert "dead_letters: {}" in out
    [(body,)] = rows(db_url, "SELECT body FROM examples_weekly_reports")
    assert set(body["unavailable"]) == {"visitors"}
    assert rows(db_url, "SELECT status::text FROM procrastinate_jobs") == [
        ("succeeded",)
    ]


def test_job_health_check(db_url: str) -> None:
    out = run_example("examples.job_health_check", db_url)
    assert "nightly-export: OVERDUE (expected every 1 day, 0:00:00)" in out
    assert "hourly-prices: ok (expected every 1:00:00)" in out
    assert "1 alert(s) sent" in out
    assert rows(db_url, "SELECT name FROM pgjobs.periodic_health WHERE overdue") == [
        ("nightly-export",)
    ]
