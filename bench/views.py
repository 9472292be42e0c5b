"""Time the monitoring views with 1,000,000 finished jobs present.

Creates a scratch database next to the configured one (``--url``, default
PGJOBS_DATABASE_URL or the embedded PostgreSQL), migrates it, seeds finished
jobs spread over 30 days with their events (generate_series, a few tens of
seconds), plus waiting, scheduled and running jobs and dead letters, then
prints a markdown table of each view's query time. The scratch database is
dropped at the end unless ``--keep``.

    python -m bench.views [--jobs 1000000] [--url postgresql://...]   (make bench-views)
"""

from __future__ import annotations

import argparse
import statistics
import time
import urllib.parse
from typing import Any

import psycopg
from psycopg import sql

from pgjobs.db import connections, schema
from pgjobs.settings import load_settings

SCRATCH = "pgjobs_bench_views"

# Finished jobs: 5% failed, 20 tasks, 5 queues; job i finished
# (jobs - i) * 30 days / jobs ago, ran 50 ms to 1 s after waiting up to 0.6 s.
SEED_JOBS = """
INSERT INTO procrastinate_jobs (queue_name, task_name, status, args, attempts)
SELECT 'queue_' || (i %% 5), 'task_' || (i %% 20),
       (CASE WHEN i %% 20 = 0 THEN 'failed' ELSE 'succeeded' END)
           ::procrastinate_job_status,
       jsonb_build_object('item_id', i), 1
  FROM generate_series(1, %(jobs)s) AS i
"""
# Each job's 'deferred' event is its deferred_at, the others rows of the log
# (sql/schema/05_job_events.sql).
SEED_EVENTS = """
WITH job AS (
    SELECT id,
           now() - (%(jobs)s - id) * (interval '30 days' / %(jobs)s)
           - interval '1 millisecond' * (50 + (id %% 100) * 10)
           - interval '1 millisecond' * ((id %% 7) * 100) AS deferred_at
      FROM procrastinate_jobs
)
UPDATE procrastinate_jobs SET deferred_at = job.deferred_at
  FROM job WHERE job.id = procrastinate_jobs.id;
WITH job AS (
    SELECT id, status,
           now() - (%(jobs)s - id) * (interval '30 days' / %(jobs)s) AS finished_at,
           interval '1 millisecond' * (50 + (id %% 100) * 10) AS run
      FROM procrastinate_jobs
)
INSERT INTO pgjobs.event_log (job_id, type, at)
SELECT id, event.type::procrastinate_job_event_type, event.at
  FROM job, LATERAL (VALUES
       ('started', finished_at - run),
       (status::text, finished_at)) AS event(type, at)
"""
SEED_LETTERS = """
INSERT INTO pgjobs.dead_letters
       (job_id, task_name, queue_name, args, attempts, error_type, error_message,
        first_failed_at, last_failed_at, created_at)
SELECT job.id, job.task_name, job.queue_name, job.args, 1, 'TimeoutError', 'slow',
       event.at, event.at, event.at
  FROM procrastinate_jobs AS job
  JOIN procrastinate_events AS event ON event.job_id = job.id AND event.type = 'failed'
"""
SEED_ACTIVE = [
    # 1,000 waiting, 100 scheduled for later (through the triggers, as real
    # enqueues), 5 workers running 10 jobs each, one of them silent.
    """INSERT INTO procrastinate_jobs (queue_name, task_name, args)
       SELECT 'queue_' || (i % 5), 'task_' || (i % 20), '{}'
         FROM generate_series(1, 1000) AS i""",
    """INSERT INTO procrastinate_jobs (queue_name, task_name, args, scheduled_at)
       SELECT 'queue_1', 'task_1', '{}', now() + interval '1 hour'
         FROM generate_series(1, 100)""",
    """INSERT INTO procrastinate_workers (last_heartbeat)
       SELECT now() - make_interval(secs => CASE WHEN i = 5 THEN 120 ELSE 1 END)
         FROM generate_series(1, 5) AS i""",
    """UPDATE procrastinate_jobs SET status = 'doing',
              worker_id = (SELECT min(id) FROM procrastinate_workers) + (id % 5)
        WHERE id IN (SELECT id FROM procrastinate_jobs WHERE status = 'todo'
                      ORDER BY id LIMIT 50)""",
]

QUERIES = [
    ("pgjobs.queue_stats", "SELECT * FROM pgjobs.queue_stats", None),
    ("pgjobs.task_stats (1 h)", "SELECT * FROM pgjobs.task_stats", None),
    ("pgjobs.task_stats (24 h)", "SELECT * FROM pgjobs.task_stats", "24 hours"),
    ("pgjobs.workers", "SELECT * FROM pgjobs.workers", None),
    ("pgjobs.stalled_jobs", "SELECT * FROM pgjobs.stalled_jobs", None),
    ("pgjobs.breaker_states", "SELECT * FROM pgjobs.breaker_states", None),
    ("pgjobs.health", "SELECT * FROM pgjobs.health", None),
    ("pgjobs.periodic_health", "SELECT * FROM pgjobs.periodic_health", None),
]


def with_dbname(url: str, name: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


def run(conn: psycopg.Connection[Any], statement: str, **params: Any) -> None:
    conn.execute(statement, params or None)  # type: ignore[arg-type]


def seed(url: str, jobs: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        run(conn, SEED_JOBS, jobs=jobs)
        for statement in SEED_EVENTS.split(";\n"):
            run(conn, statement, jobs=jobs)
        run(conn, SEED_LETTERS)
        for statement in SEED_ACTIVE:
            run(conn, statement)
        run(conn, "VACUUM ANALYZE")
        print(f"seeded {jobs:,} finished jobs in {time.perf_counter() - started:.0f} s")


def time_queries(url: str, repeat: int) -> list[tuple[str, int, float, float]]:
    results = []
    with psycopg.connect(url, autocommit=True) as conn:
        for label, query, window in QUERIES:
            conn.execute("RESET pgjobs.stats_window")
            if window:
                conn.execute(
                    "SELECT set_config('pgjobs.stats_window', %s, false)", (window,)
                )
            timings = []
            rows = 0
            for _ in range(repeat + 1):  # the first run warms the cache
                begin = time.perf_counter()
                rows = len(conn.execute(query).fetchall())  # type: ignore[arg-type]
                timings.append((time.perf_counter() - begin) * 1000)
            timings = timings[1:]
            results.append((label, rows, statistics.median(timings), max(timings)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--url", help="server to use (any database on it)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    options = parser.parse_args()

    base = options.url or connections.conninfo(load_settings())
    url = with_dbname(base, SCRATCH)
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
        sql.Identifier(SCRATCH)
    )
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(drop)
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(SCRATCH)))
        version = admin.execute("SHOW server_version").fetchone()
    try:
        schema.upgrade(url)
        seed(url, options.jobs)
        results = time_queries(url, options.repeat)
    finally:
        if not options.keep:
            with psycopg.connect(base, autocommit=True) as admin:
                admin.execute(drop)
    print()
    print(
        f"PostgreSQL {version[0] if version else '?'}, {options.jobs:,} finished "
        f"jobs, median of {options.repeat} runs"
    )
    print()
    print("| view | rows | median ms | max ms |")
    print("|---|---:|---:|---:|")
    for label, rows, median, worst in results:
        print(f"| {label} | {rows} | {median:.1f} | {worst:.1f} |")


if __name__ == "__main__":
    main()
