"""Bad input at every edge: one clear pgjobs error, nothing written, no crash.

Property-based (hypothesis) where the input space is large: payload values,
names, dates. Rows a worker cannot decode (unknown task, arguments that do
not fit the task) are dead-lettered with the reason; the worker runs on.
"""

from __future__ import annotations

import datetime
import json
import math
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgjobs import App, InvalidJobOptions, InvalidPayload, TaskNotFound

JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
HYPOTHESIS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def same(stored: Any, sent: Any) -> bool:
    """jsonb equality: numbers compare by value (jsonb keeps 1e16 as an
    integer), everything else exactly."""
    if isinstance(sent, bool) or isinstance(stored, bool):
        return stored is sent
    if isinstance(sent, int | float) and isinstance(stored, int | float):
        return math.isclose(stored, sent, rel_tol=1e-15, abs_tol=0.0)
    if isinstance(sent, list) and isinstance(stored, list):
        return len(sent) == len(stored) and all(map(same, stored, sent))
    if isinstance(sent, dict) and isinstance(stored, dict):
        return sent.keys() == stored.keys() and all(
            same(stored[k], sent[k]) for k in sent
        )
    return bool(stored == sent)


def count_jobs(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM procrastinate_jobs").fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def bad_app(app: App) -> App:
    @app.task(name="free")
    def free(value: Any = None) -> None: ...

    @app.task(name="typed")
    def typed(count: int, when: datetime.datetime | None = None) -> None: ...

    return app


@HYPOTHESIS
@given(value=JSON_VALUES)
def test_any_json_value_round_trips_or_is_refused(
    bad_app: App, db_url: str, value: Any
) -> None:
    """Whatever the value, enqueue either stores exactly it or refuses it
    with InvalidPayload (NUL characters, NaN/inf) and writes nothing."""
    with psycopg.connect(db_url) as conn:
        before = count_jobs(conn)
        try:
            job_id = bad_app.enqueue(conn, "free", {"value": value})
        except InvalidPayload as exc:
            conn.rollback()
            text = json.dumps(value)
            nul = "\\u0000" in text and "NUL" in str(exc)
            non_finite = ("NaN" in text or "Infinity" in text) and (
                "not JSON numbers" in str(exc)
            )
            assert nul or non_finite, (str(exc), value)
            assert count_jobs(conn) == before
            return
        conn.commit()
        row = conn.execute(
            "SELECT args FROM procrastinate_jobs WHERE id = %s", [job_id]
        ).fetchone()
        assert row is not None and same(row[0], {"value": value}), (row[0], value)


@HYPOTHESIS
@given(name=st.text(min_size=0, max_size=300))
def test_queue_names_are_checked_before_anything_is_written(
    bad_app: App, db_url: str, name: str
) -> None:
    with psycopg.connect(db_url) as conn:
        before = count_jobs(conn)
        try:
            bad_app.enqueue(conn, "free", {}, queue=name)
        except InvalidJobOptions as exc:
            conn.rollback()
            assert not name or len(name) > 128 or "\x00" in name, str(exc)
            assert count_jobs(conn) == before
            return
        conn.rollback()
        assert name and len(name) <= 128 and "\x00" not in name


@pytest.mark.parametrize(
    ("payload", "options", "error", "message"),
    [
        ({"count": "many"}, {}, InvalidPayload, "valid integer"),
        ({"count": 1, "when": "2026-01-01T00:00:00"}, {}, InvalidPayload, "timezone"),
        ({"count": 1, "extra": 2}, {}, InvalidPayload, "unexpected argument"),
        ({"count": 1, "blob": "x" * 1_100_000}, {}, InvalidPayload, "unexpected"),
        (
            {"count": 1},
            {"run_at": datetime.datetime(2030, 1, 1)},
            InvalidJobOptions,
            "timezone",
        ),
        ({"count": 1}, {"delay": -5}, InvalidJobOptions, "delay"),
        ({"count": 1}, {"priority": 2**40}, InvalidJobOptions, "out of range"),
        ({"count": 1}, {"queue": "q" * 129}, InvalidJobOptions, "1 to 128"),
        ({"count": 1}, {"lock": "a\x00b"}, InvalidJobOptions, "NUL"),
        ({"count": 1}, {"queueing_lock": "\x00"}, InvalidJobOptions, "NUL"),
    ],
)
def test_refused_payloads_and_options_write_nothing(
    bad_app: App,
    conn: psycopg.Connection[Any],
    payload: dict[str, Any],
    options: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error, match=message or None):
        bad_app.enqueue(conn, "typed", payload, **options)
    conn.rollback()
    assert count_jobs(conn) == 0


def test_run_at_far_past_runs_now_and_far_future_waits(
    bad_app: App, conn: psycopg.Connection[Any]
) -> None:
    utc = datetime.UTC
    past = bad_app.enqueue(
        conn, "typed", {"count": 1}, run_at=datetime.datetime(1970, 1, 2, tzinfo=utc)
    )
    future = bad_app.enqueue(
        conn, "typed", {"count": 2}, run_at=datetime.datetime(9999, 1, 1, tzinfo=utc)
    )
    conn.commit()
    ready = conn.execute(
        "SELECT id FROM procrastinate_jobs"
        " WHERE status = 'todo' AND (scheduled_at IS NULL OR scheduled_at <= now())"
    ).fetchall()
    assert ready == [(past,)] and future is not None


def test_unknown_task_name_is_refused(
    bad_app: App, conn: psycopg.Connection[Any]
) -> None:
    with pytest.raises(TaskNotFound):
        bad_app.enqueue(conn, "no.such.task", {})
    conn.rollback()
    assert count_jobs(conn) == 0


async def test_rows_a_worker_cannot_decode_are_dead_lettered(
    bad_app: App, conn: psycopg.Connection[Any]
) -> None:
    """Rows written behind pgjobs' back: an unknown task, arguments that do not
    fit the task. Each is dead-lettered with its reason; the good job runs."""
    conn.execute(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, args) VALUES"
        " ('default', 'gone.task', '{}'),"
        " ('default', 'typed', '{\"count\": \"many\"}'),"
        " ('default', 'typed', '{\"count\": 3}')"
    )
    conn.commit()
    async with bad_app.open_async():
        await bad_app.run_worker_async(wait=False, install_signal_handlers=False)
    statuses = conn.execute(
        "SELECT task_name, args->>'count', status::text FROM procrastinate_jobs ORDER BY id"
    ).fetchall()
    assert statuses == [
        ("gone.task", None, "failed"),
        ("typed", "many", "failed"),
        ("typed", "3", "succeeded"),
    ]
    letters = conn.execute(
        "SELECT task_name, error_type FROM pgjobs.dead_letters ORDER BY job_id"
    ).fetchall()
    assert letters[0] == ("gone.task", "TaskNotFound")
    assert letters[1][0] == "typed" and letters[1][1] != "Unknown"
