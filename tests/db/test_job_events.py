"""A job's events: the 'deferred' one in the job row (migration 0022), and
the current attempt's 'started' and a success's 'succeeded' (migration
0024), the others in pgjobs.event_log, procrastinate_events the view over
them; what deleting jobs does to their rows (migration 0023)."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs import App, RetryPolicy
from pgjobs.admin import jobs, retention
from tests.support import one, run_worker

OFFSET = 2**62
SUCCEEDED = 2**62 + 2**61


def events(conn: psycopg.Connection[Any], job_id: int) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT id, type::text FROM procrastinate_events WHERE job_id = %s ORDER BY id",
        [job_id],
    ).fetchall()


def test_an_enqueue_writes_no_event_row_and_the_view_still_shows_it(
    app: App, conn: psycopg.Connection[Any]
) -> None:
    app.task(name="noop")(lambda: None)
    first, second = app.enqueue_many(conn, "noop", [{}, {}])
    conn.commit()
    [(logged,)] = conn.execute("SELECT count(*) FROM pgjobs.event_log").fetchall()
    assert logged == 0
    rows = conn.execute(
        "SELECT event.id, event.job_id, event.type::text, event.at = job.deferred_at"
        "  FROM procrastinate_events AS event"
        "  JOIN procrastinate_jobs AS job ON job.id = event.job_id"
        " ORDER BY event.id"
    ).fetchall()
    # In job order, below every logged event's id.
    assert rows == [
        (first - OFFSET, first, "deferred", True),
        (second - OFFSET, second, "deferred", True),
    ]
    # A job inserted in another state (by hand) had no 'deferred' event.
    [(running,)] = conn.execute(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, status)"
        " VALUES ('default', 'noop', 'doing') RETURNING id"
    ).fetchall()
    assert events(conn, running) == []


def test_writes_through_the_view_land_where_the_event_lives(
    app: App, conn: psycopg.Connection[Any]
) -> None:
    app.task(name="noop")(lambda: None)
    job = app.enqueue(conn, "noop", {})
    [(logged_id,)] = conn.execute(
        "INSERT INTO procrastinate_events (job_id, type, at)"
        " VALUES (%s, 'started', now() - interval '1 hour') RETURNING id",
        [job],
    ).fetchall()
    assert logged_id > 0
    assert events(conn, job) == [(job - OFFSET, "deferred"), (logged_id, "started")]
    conn.execute(
        "UPDATE procrastinate_events SET at = now() - interval '2 hours' WHERE job_id = %s",
        [job],
    )
    [(deferred_age, started_age)] = conn.execute(
        "SELECT extract(epoch FROM now() - job.deferred_at)::int,"
        "       extract(epoch FROM now() - log.at)::int"
        "  FROM procrastinate_jobs AS job JOIN pgjobs.event_log AS log ON log.job_id = job.id"
        " WHERE job.id = %s",
        [job],
    ).fetchall()
    assert (deferred_age, started_age) == (7200, 7200)
    conn.execute("DELETE FROM procrastinate_events WHERE job_id = %s", [job])
    assert events(conn, job) == []
    [(deferred_at,)] = conn.execute(
        "SELECT deferred_at FROM procrastinate_jobs WHERE id = %s", [job]
    ).fetchall()
    assert deferred_at is None
    # A 'deferred' event for a job that does not exist: refused, as the
    # foreign key refused it.
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute(
            "INSERT INTO procrastinate_events (job_id, type) VALUES (-1, 'deferred')"
        )


def test_deleting_or_truncating_jobs_takes_their_rows_and_nothing_else(
    app: App, conn: psycopg.Connection[Any]
) -> None:
    app.task(name="noop")(lambda: None)
    gone, kept = app.enqueue_many(conn, "noop", [{}, {}])
    for job in (gone, kept):
        conn.execute(
            "INSERT INTO pgjobs.event_log (job_id, type) VALUES (%s, 'started')", [job]
        )
        conn.execute(
            "INSERT INTO pgjobs.job_progress (job_id, progress) VALUES (%s, 0.5)", [job]
        )
    conn.execute("DELETE FROM procrastinate_jobs WHERE id = %s", [gone])

    def left() -> list[tuple[Any, ...]]:
        return conn.execute(
            "SELECT 'log', job_id FROM pgjobs.event_log"
            " UNION ALL SELECT 'progress', job_id FROM pgjobs.job_progress"
            " ORDER BY 1, 2"
        ).fetchall()

    assert left() == [("log", kept), ("progress", kept)]
    # The owner's function deletes only the rows of jobs that are gone.
    conn.execute("SELECT pgjobs.delete_job_rows(ARRAY[%s]::bigint[])", [kept])
    assert left() == [("log", kept), ("progress", kept)]
    conn.execute("TRUNCATE procrastinate_jobs")
    assert left() == []


def logged(conn: psycopg.Connection[Any], job_id: int) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT type::text, from_job FROM pgjobs.event_log WHERE job_id = %s ORDER BY id",
        [job_id],
    ).fetchall()


async def test_a_run_writes_no_event_row_and_a_retry_keeps_each_start(
    app: App, db_url: str, tmp_path: Path
) -> None:
    marker = tmp_path / "failed-once"

    @app.task(name="ok")
    def ok() -> None:
        pass

    @app.task(
        name="once", retry=RetryPolicy(max_attempts=2, base_delay=0, jitter="none")
    )
    def once() -> None:
        if not marker.exists():
            marker.touch()
            raise ValueError("first attempt")

    with psycopg.connect(db_url) as conn:
        good = app.enqueue(conn, "ok", {})
        flaky = app.enqueue(conn, "once", {})
    await run_worker(app)
    with psycopg.connect(db_url) as conn:
        # A success: its three events are its row's (no event row at all).
        assert logged(conn, good) == []
        assert events(conn, good) == [
            (good - OFFSET, "deferred"),
            (good + OFFSET, "started"),
            (good + SUCCEEDED, "succeeded"),
        ]
        deferred_at, started_at, finished_at = one(
            conn,
            "SELECT deferred_at, started_at, finished_at FROM procrastinate_jobs"
            " WHERE id = %s",
            good,
        )
        assert deferred_at <= started_at <= finished_at
        shown = jobs.get_job(db_url, good)
        assert (shown.started_at, shown.finished_at) == (started_at, finished_at)
        # A retry: the failed attempt's start went into the log (marked as
        # kept in the row first) before its failure; the second attempt's
        # start and its success are the row's.
        assert logged(conn, flaky) == [
            ("started", True),
            ("scheduled", None),
            ("deferred_for_retry", None),
        ]
        assert [kind for _, kind in events(conn, flaky)] == [
            "deferred",
            "started",
            "scheduled",
            "deferred_for_retry",
            "started",
            "succeeded",
        ]
        # Each start counted once in the rollups (the move is not a start).
        assert (
            one(
                conn,
                "SELECT sum(started) FROM pgjobs.task_rollups WHERE task_name = 'once'",
            )
            == 2
        )
        assert one(
            conn,
            "SELECT sum(succeeded)::int, sum(retried)::int FROM pgjobs.task_rollups"
            " WHERE task_name = 'once' AND bucket = -1",
        ) == (1, 1)


def test_an_update_that_logs_an_event_moves_the_kept_ones_first(
    app: App, conn: psycopg.Connection[Any]
) -> None:
    app.task(name="noop")(lambda: None)
    running, finished = app.enqueue_many(conn, "noop", [{}, {}])
    # Claimed as pgjobs.fetch_jobs claims (its own events, no trigger's).
    conn.execute("SELECT set_config('pgjobs.batch_events', 'on', true)")
    conn.execute(
        "UPDATE procrastinate_jobs SET status = 'doing', started_at = now() - interval '1 minute'"
        " WHERE id = ANY(%s)",
        [[running, finished]],
    )
    conn.execute("SELECT set_config('pgjobs.batch_events', 'off', true)")
    # An abort request on a running job: its start is logged before it.
    conn.execute(
        "UPDATE procrastinate_jobs SET abort_requested = true WHERE id = %s", [running]
    )
    assert logged(conn, running) == [("started", True), ("abort_requested", None)]
    assert (
        one(conn, "SELECT started_at FROM procrastinate_jobs WHERE id = %s", running)
        is None
    )
    # A success kept in the row (as pgjobs.finish_jobs writes it), then the
    # job run again by hand: both into the log, in order.
    conn.execute("SELECT set_config('pgjobs.batch_events', 'on', true)")
    conn.execute(
        "UPDATE procrastinate_jobs SET status = 'succeeded', finished_at = now()"
        " WHERE id = %s",
        [finished],
    )
    conn.execute("SELECT set_config('pgjobs.batch_events', 'off', true)")
    assert logged(conn, finished) == []
    conn.execute(
        "UPDATE procrastinate_jobs SET status = 'todo' WHERE id = %s", [finished]
    )
    assert logged(conn, finished) == [("started", True), ("succeeded", True)]
    assert one(
        conn,
        "SELECT started_at, finished_at FROM procrastinate_jobs WHERE id = %s",
        finished,
    ) == (None, None)
    # The view: the same events before and after the move, ids in order.
    assert [kind for _, kind in events(conn, finished)] == [
        "deferred",
        "started",
        "succeeded",
    ]
    # Deleting a kept event through the view clears its column.
    conn.execute(
        "UPDATE procrastinate_jobs SET status = 'doing', started_at = now() WHERE id = %s",
        [finished],
    )
    conn.execute("DELETE FROM procrastinate_events WHERE id = %s", [finished + OFFSET])
    assert (
        one(conn, "SELECT started_at FROM procrastinate_jobs WHERE id = %s", finished)
        is None
    )


async def test_retention_finds_successes_by_their_finished_at(
    app: App, db_url: str
) -> None:
    app.task(name="ok")(lambda: None)
    with psycopg.connect(db_url) as conn:
        old, new = app.enqueue_many(conn, "ok", [{}, {}])
    await run_worker(app)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE procrastinate_jobs SET finished_at = now() - interval '2 hours',"
            " started_at = now() - interval '2 hours', deferred_at = now() - interval '3 hours'"
            " WHERE id = %s",
            [old],
        )
        policy = retention.RetentionPolicy(succeeded_after=datetime.timedelta(hours=1))
        result = retention.prune(db_url, policy)
        left = [row[0] for row in conn.execute("SELECT id FROM procrastinate_jobs")]
    assert (result.succeeded_jobs, left) == (1, [new])
