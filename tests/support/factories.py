"""Seeding helpers for the monitoring tests: jobs, events and dead letters
with timestamps relative to the database clock (seconds ago)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

Events = Sequence[tuple[str, float]]


def add_job(
    conn: psycopg.Connection[Any],
    *,
    task: str = "task",
    queue: str = "default",
    status: str = "todo",
    events: Events = (),
    scheduled_in: float | None = None,
    worker_id: int | None = None,
    attempts: int = 0,
    args: str = "{}",
) -> int:
    """A job row whose only events are ``events`` ((type, seconds ago)...)."""
    row = conn.execute(
        "INSERT INTO procrastinate_jobs"
        " (queue_name, task_name, status, scheduled_at, worker_id, attempts, args)"
        " VALUES (%s, %s, %s, now() + make_interval(secs => %s), %s, %s, %s)"
        " RETURNING id",
        (queue, task, status, scheduled_in, worker_id, attempts, args),
    ).fetchone()
    assert row is not None
    job_id = int(row[0])
    conn.execute("DELETE FROM procrastinate_events WHERE job_id = %s", (job_id,))
    for event_type, ago in events:
        conn.execute(
            "INSERT INTO procrastinate_events (job_id, type, at)"
            " VALUES (%s, %s, now() - make_interval(secs => %s))",
            (job_id, event_type, ago),
        )
    return job_id


def add_worker(conn: psycopg.Connection[Any], heartbeat_ago: float = 0) -> int:
    row = conn.execute(
        "INSERT INTO procrastinate_workers (last_heartbeat)"
        " VALUES (now() - make_interval(secs => %s)) RETURNING id",
        (heartbeat_ago,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def add_dead_letter(
    conn: psycopg.Connection[Any],
    *,
    task: str = "task",
    queue: str = "default",
    created_ago: float = 0,
    replayed: bool = False,
    job_id: int = 0,
) -> int:
    row = conn.execute(
        "INSERT INTO pgjobs.dead_letters"
        " (job_id, task_name, queue_name, attempts, error_type, first_failed_at,"
        "  last_failed_at, created_at, replayed_at)"
        " VALUES (%s, %s, %s, 1, 'ValueError', now(), now(),"
        "  now() - make_interval(secs => %s), CASE WHEN %s THEN now() END)"
        " RETURNING id",
        (job_id, task, queue, created_ago, replayed),
    ).fetchone()
    assert row is not None
    return int(row[0])


def finished(start_ago: float, run_s: float, outcome: str = "succeeded") -> Events:
    """Events of a job queued 1 s before it started and ran ``run_s`` seconds."""
    return [
        ("deferred", start_ago + 1),
        ("started", start_ago),
        (outcome, start_ago - run_s),
    ]
