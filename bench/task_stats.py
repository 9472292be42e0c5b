"""Time pgjobs.task_stats with 1,000,000 attempts in its window, before and after
the rollups.

Creates a scratch database next to the configured one (``--url``, default
PGJOBS_DATABASE_URL or the embedded PostgreSQL), migrates it and seeds
``--attempts`` attempts of 20 tasks that all ended in the last hour (run
times 5 ms to 5 s, log-uniform; 5% failed, 2% retried) with their events,
and the rollups the workers would have written for them, every task in each
of the 4 shards (the most rows the view can meet). Then it times the view
against the same numbers counted from the events the old way
(``tests/monitoring/task_stats_from_events.sql``, the view before migration
0020), and prints both with the largest percentile difference. The scratch
database is dropped at the end unless ``--keep``.

    python -m bench.task_stats [--attempts 1000000] [--url postgresql://...]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from bench.views import run, with_dbname
from pgjobs.db import connections, schema
from pgjobs.settings import load_settings

SCRATCH = "pgjobs_bench_task_stats"
FROM_EVENTS = (
    Path(__file__).parent.parent / "tests" / "monitoring" / "task_stats_from_events.sql"
).read_text()

# The window is set to 3 hours so that all of them stay in it while the
# queries run. Attempt i of n ended (n - i) * 59 min / n + 1 s ago; its job was ready
# (i % 7) * 100 ms before it started.
ATTEMPTS = """
CREATE TEMPORARY TABLE attempt AS
SELECT i, 'task_' || (i %% 20) AS task_name,
       CASE WHEN i %% 20 = 0 THEN 'failed'
            WHEN i %% 50 = 1 THEN 'deferred_for_retry'
            ELSE 'succeeded' END AS outcome,
       ended_at,
       ended_at - run AS started_at,
       ended_at - run - interval '1 millisecond' * ((i %% 7) * 100) AS ready_at
  FROM generate_series(1, %(attempts)s) AS i,
       LATERAL (SELECT now() - interval '1 second'
                       - (%(attempts)s - i) * (interval '59 minutes' / %(attempts)s)
                           AS ended_at,
                       interval '1 microsecond' * round(
                           5000 * power(1000, ((i::bigint * 7919) %% 1000) / 1000.0))
                           AS run) AS shape
"""
SEED_JOBS = """
INSERT INTO procrastinate_jobs (id, queue_name, task_name, status, args, attempts)
SELECT i, 'default', task_name,
       (CASE outcome WHEN 'deferred_for_retry' THEN 'todo' ELSE outcome END)
           ::procrastinate_job_status,
       '{}', 1
  FROM attempt
"""
# With pgjobs.batch_events on, as the batch functions write them: the
# rollups are seeded below in one statement instead of one trigger call per
# event.
SEED_EVENTS = """
UPDATE procrastinate_jobs SET deferred_at = attempt.ready_at
  FROM attempt WHERE attempt.i = procrastinate_jobs.id;
INSERT INTO pgjobs.event_log (job_id, type, at)
SELECT i, event.type::procrastinate_job_event_type, event.at
  FROM attempt, LATERAL (VALUES ('started', started_at), (outcome, ended_at))
       AS event(type, at)
"""
# Shard (i / 20) % 4: every task's rows in each of the 4 shards.
SEED_ROLLUPS = """
INSERT INTO pgjobs.task_rollups
       (minute, task_name, bucket, shard, runs, succeeded, failed, retried, timed,
        run_s, min_run_s, max_run_s)
SELECT date_trunc('minute', ended_at), task_name, -1, (i / 20) % 4, count(*),
       count(*) FILTER (WHERE outcome = 'succeeded'),
       count(*) FILTER (WHERE outcome = 'failed'),
       count(*) FILTER (WHERE outcome = 'deferred_for_retry'),
       count(*), sum(run_s), min(run_s), max(run_s)
  FROM attempt,
       LATERAL (SELECT extract(epoch FROM ended_at - started_at)::double precision
                           AS run_s) AS run
 GROUP BY 1, 2, 4;
INSERT INTO pgjobs.task_rollups (minute, task_name, bucket, shard, runs)
SELECT pgjobs.run_time_block(ended_at), task_name, pgjobs.run_time_bucket(run_s),
       (i / 20) % 4, count(*)
  FROM attempt,
       LATERAL (SELECT extract(epoch FROM ended_at - started_at)::double precision
                           AS run_s) AS run
 GROUP BY 1, 2, 3, 4;
INSERT INTO pgjobs.task_rollups
       (minute, task_name, bucket, shard, started, waited, wait_s)
SELECT date_trunc('minute', started_at), task_name, -2, (i / 20) % 4, count(*),
       count(*), sum(extract(epoch FROM started_at - ready_at)::double precision)
  FROM attempt
 GROUP BY 1, 2, 4
"""


def seed(url: str, attempts: int) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        run(conn, "SET pgjobs.batch_events = on")
        run(conn, ATTEMPTS, attempts=attempts)
        for statement in (SEED_JOBS, SEED_EVENTS, *SEED_ROLLUPS.split(";")):
            run(conn, statement)
        run(conn, "VACUUM ANALYZE")
        row = conn.execute("SELECT count(*) FROM pgjobs.task_rollups").fetchone()
        print(
            f"seeded {attempts:,} attempts in {time.perf_counter() - started:.0f} s"
            f" ({row[0] if row else 0:,} rollup rows)"
        )
        return int(row[0]) if row else 0


def timed(
    conn: psycopg.Connection[Any], query: str, repeat: int
) -> tuple[float, float, list[dict[str, Any]]]:
    timings = []
    rows: list[dict[str, Any]] = []
    for _ in range(repeat + 1):  # the first run warms the cache
        begin = time.perf_counter()
        rows = conn.execute(query).fetchall()  # type: ignore[arg-type]
        timings.append((time.perf_counter() - begin) * 1000)
    return statistics.median(timings[1:]), max(timings[1:]), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=1_000_000)
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
        rollups = seed(url, options.attempts)
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            # All of them in the window however long seeding and timing took
            # (they ended in the last hour when seeded).
            run(conn, "SET pgjobs.stats_window = '3 hours'")
            new = timed(conn, "SELECT * FROM pgjobs.task_stats", options.repeat)
            old = timed(conn, FROM_EVENTS, max(1, options.repeat // 2))
    finally:
        if not options.keep:
            with psycopg.connect(base, autocommit=True) as admin:
                admin.execute(drop)
    exact = {row["task_name"]: row for row in old[2]}
    worst = max(
        abs(row[p] / exact[row["task_name"]][p] - 1)
        for row in new[2]
        for p in ("p50_s", "p95_s", "p99_s")
    )
    same = all(
        row[c] == exact[row["task_name"]][c]
        for row in new[2]
        for c in ("started", "runs", "succeeded", "failed", "retried")
    )
    print()
    print(
        f"PostgreSQL {version[0] if version else '?'}, {options.attempts:,} attempts"
        f" of 20 tasks in the window, {rollups:,} rollup rows"
    )
    print()
    print("| query | rows | median ms | max ms |")
    print("|---|---:|---:|---:|")
    print(f"| events, the old way | {len(old[2])} | {old[0]:.1f} | {old[1]:.1f} |")
    print(f"| pgjobs.task_stats | {len(new[2])} | {new[0]:.1f} | {new[1]:.1f} |")
    print()
    print(
        f"counts equal: {same}; largest percentile difference: {worst:.2%} (bound 4.9%)"
    )


if __name__ == "__main__":
    main()
