"""The failure-handling examples run end to end against a real database."""

from __future__ import annotations

import pytest

from tests.support import rows, run_example

pytestmark = pytest.mark.slow


def test_data_sync_with_retries(db_url: str) -> None:
    out = run_example("examples.data_sync_with_retries", db_url)
    assert "customer 5: succeeded after 3 attempt(s)" in out
    assert "customer 13: failed after 1 attempt(s); errors: ['UnknownCustomer']" in out
    assert rows(
        db_url,
        "SELECT args->>'customer_id', status::text, attempts FROM procrastinate_jobs "
        "ORDER BY id",
    ) == [
        ("1", "succeeded", 2),
        ("2", "succeeded", 3),
        ("5", "succeeded", 3),
        ("13", "failed", 1),
    ]
    assert rows(db_url, "SELECT error_type FROM pgjobs.dead_letters") == [
        ("UnknownCustomer",)
    ]


def test_api_sync_with_breaker(db_url: str) -> None:
    out = run_example("examples.api_sync_with_breaker", db_url)
    assert "breaker shipping-api: open" in out
    assert "8 shipments pushed, 0 failed" in out
    assert rows(db_url, "SELECT name, state FROM pgjobs.breakers") == [
        ("shipping-api", "closed")
    ]
    # The breaker spared attempts: far fewer failures than 8 jobs x 5 attempts.
    [(failures,)] = rows(db_url, "SELECT count(*) FROM pgjobs.job_errors")
    assert 3 <= failures < 8
    assert rows(db_url, "SELECT count(*) FROM pgjobs.dead_letters") == [(0,)]


def test_dead_letters_alert_replay(db_url: str) -> None:
    out = run_example("examples.dead_letters_alert_replay", db_url)
    assert out.count("ALERT examples.send_invoice") == 3
    assert "3 dead letters, 3 alerts" in out
    assert "replaying again enqueued 0" in out
    assert "3 replayed invoices sent" in out
    assert rows(
        db_url,
        "SELECT count(*) FROM pgjobs.dead_letters WHERE replay_job_id IS NOT NULL",
    ) == [(3,)]
