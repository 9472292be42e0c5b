"""Time every dashboard page with 1,000,000 finished jobs present.

Seeds a scratch database like ``bench.views`` (finished jobs over 30 days
with their events, 5% failed with error rows and dead letters, waiting,
scheduled and running jobs), then requests each page through the real ASGI
app (Starlette's TestClient: routing, queries, template rendering; no
network) and prints a markdown table of page times. The scratch database is
dropped at the end unless ``--keep``.

    python -m bench.dashboard [--jobs 1000000] [--url postgresql://...]
    make bench-dashboard
"""

from __future__ import annotations

import argparse
import statistics
import time

import psycopg
from psycopg import sql

from bench.views import SCRATCH, seed, with_dbname
from pgjobs.db import connections, schema
from pgjobs.settings import Settings, load_settings

SEED_ERRORS = """
INSERT INTO pgjobs.job_errors
       (job_id, task_name, queue_name, attempt, error_type, error_message,
        traceback, failed_at)
SELECT letter.job_id, letter.task_name, letter.queue_name, 1, letter.error_type,
       letter.error_message, 'Traceback (most recent call last): ...',
       letter.last_failed_at
  FROM pgjobs.dead_letters AS letter
"""


def pages(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        ids = conn.execute(
            "SELECT min(id), max(id), (SELECT max(id) FROM procrastinate_jobs "
            "WHERE status = 'failed') FROM procrastinate_jobs"
        ).fetchone()
    assert ids is not None
    first, last, failed = ids
    middle = (first + last) // 2
    return [
        ("overview", "/"),
        ("queues", "/queues"),
        ("jobs", "/jobs"),
        ("jobs, page in the middle", f"/jobs?before={middle}"),
        ("jobs, failed", "/jobs?status=failed"),
        ("jobs, failed, page in the middle", f"/jobs?status=failed&before={middle}"),
        ("jobs, waiting", "/jobs?status=todo"),
        ("jobs, one task", "/jobs?task=task_3"),
        ("jobs, one queue, failed", "/jobs?queue=queue_0&status=failed"),
        ("job detail (failed)", f"/jobs/{failed}"),
        ("bulk retry confirmation", "/jobs/bulk?action=retry"),
        ("dead letters", "/dead-letters"),
        ("tasks", "/tasks"),
        ("workers", "/workers"),
        ("schedules", "/schedules"),
        ("breakers", "/breakers"),
        ("audit", "/audit"),
        ("healthz", "/healthz"),
    ]


def time_pages(url: str, repeat: int) -> list[tuple[str, int, float, float]]:
    from starlette.testclient import TestClient

    from pgjobs.dashboard import create_app

    settings = Settings(database_url=url, _env_file=None)  # type: ignore[call-arg]
    # A generous timeout: the bench reports slow pages instead of cancelling them.
    settings = settings.model_copy(update={"dashboard_statement_timeout": 60.0})
    results = []
    with TestClient(create_app(settings)) as client:
        for label, path in pages(url):
            timings = []
            status = 0
            for _ in range(repeat + 1):  # the first run warms the cache
                begin = time.perf_counter()
                response = client.get(path)
                timings.append((time.perf_counter() - begin) * 1000)
                status = response.status_code
            timings = timings[1:]
            results.append((label, status, statistics.median(timings), max(timings)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--url", help="server to use (any database on it)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    options = parser.parse_args()

    base = options.url or connections.conninfo(load_settings())
    name = SCRATCH + "_dashboard"
    url = with_dbname(base, name)
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
        sql.Identifier(name)
    )
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(drop)
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        version = admin.execute("SHOW server_version").fetchone()
    try:
        schema.upgrade(url)
        seed(url, options.jobs)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(SEED_ERRORS)
            conn.execute("ANALYZE pgjobs.job_errors")
        results = time_pages(url, options.repeat)
    finally:
        if not options.keep:
            with psycopg.connect(base, autocommit=True) as admin:
                admin.execute(drop)
    print()
    print(
        f"PostgreSQL {version[0] if version else '?'}, {options.jobs:,} finished "
        f"jobs, median of {options.repeat} requests per page"
    )
    print()
    print("| page | status | median ms | max ms |")
    print("|---|---:|---:|---:|")
    for label, status, median, worst in results:
        print(f"| {label} | {status} | {median:.1f} | {worst:.1f} |")


if __name__ == "__main__":
    main()
