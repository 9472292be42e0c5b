"""A job's events: the 'deferred' one in the job row, the others in
pgjobs.event_log, procrastinate_events the view over both (migration 0022);
what deleting jobs does to their rows (migration 0023)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from pgjobs import App

OFFSET = 2**62


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
