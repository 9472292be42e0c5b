"""``pgjobs.task_stats`` from its rollups gives what the events say.

The jobs go through the real paths: an in-process worker, and the SQL
functions a worker calls for what it cannot be made to do on cue (batch
claims and finishes from several connections, prefetched starts, rescues,
interruptions, aborts, releases, expirations). The events are then counted
the old way (``task_stats_from_events.sql``, the view before migration 0020)
and compared with the view: counts equal, means and maxima equal, p50, p95
and p99 within the run-time buckets' 5%.
"""

from __future__ import annotations

import datetime
import random
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from procrastinate import JobContext
from psycopg.rows import dict_row

from pgjobs import App, RetryPolicy
from pgjobs.admin import retention
from pgjobs.db import schema
from pgjobs.worker import stats_pruning
from tests.support import run_worker
from tests.support.factories import add_job, finished

pytestmark = pytest.mark.timeout(120)

FROM_EVENTS = (Path(__file__).parent / "task_stats_from_events.sql").read_text()
COUNTS = (
    "started",
    "runs",
    "succeeded",
    "failed",
    "retried",
    "aborted",
    "interrupted",
    "expired",
)
EXACT = ("failure_rate", "mean_s", "max_s", "mean_wait_s")
PERCENTILES = ("p50_s", "p95_s", "p99_s")


def stats(url: str, query: str) -> dict[str, dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return {row["task_name"]: row for row in conn.execute(query)}  # type: ignore[arg-type]


def assert_same_stats(url: str) -> dict[str, dict[str, Any]]:
    """The view against the events counted the old way; returns the view."""
    expected = stats(url, FROM_EVENTS)
    got = stats(url, "SELECT * FROM pgjobs.task_stats")
    assert set(got) == set(expected)
    for task, want in expected.items():
        row = got[task]
        assert {c: row[c] for c in COUNTS} == {c: want[c] for c in COUNTS}, task
        for columns, rel in ((EXACT, 1e-9), (PERCENTILES, 0.05)):
            for column in columns:
                if want[column] is None:
                    assert row[column] is None, (task, column)
                else:
                    assert row[column] == pytest.approx(want[column], rel=rel), (
                        task,
                        column,
                    )
    return got


def new_job(conn: psycopg.Connection[Any], task: str, queue: str) -> int:
    row = conn.execute(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, args)"
        " VALUES (%s, %s, '{}') RETURNING id",
        (queue, task),
    ).fetchone()
    assert row is not None
    return int(row[0])


def claim(
    conn: psycopg.Connection[Any],
    queue: str,
    worker: int,
    limit: int,
    start: int | None = None,
) -> list[int]:
    rows = conn.execute(
        "SELECT id FROM pgjobs.fetch_jobs(ARRAY[%s]::varchar[], %s, %s, %s)"
        " ORDER BY id",
        (queue, worker, limit, start),
    ).fetchall()
    return [int(r[0]) for r in rows]


def finish(
    conn: psycopg.Connection[Any],
    worker: int | None,
    outcomes: dict[int, str],
    started: list[int] | None = None,
) -> None:
    conn.execute(
        "SELECT * FROM pgjobs.finish_jobs(%s, %s::procrastinate_job_status[], %s,"
        " %s, %s)",
        (
            list(outcomes),
            list(outcomes.values()),
            [False] * len(outcomes),
            started or [],
            worker,
        ),
    )


def register_worker(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT worker_id FROM procrastinate_register_worker_v1()"
    ).fetchone()
    assert row is not None
    return int(row[0])


def seed_through_sql(url: str) -> None:
    """Every writer of a counted event, from three connections (three
    backends: rollup shards), with run times of a few to tens of ms."""
    rng = random.Random(18)
    conns = [psycopg.connect(url, autocommit=True) for _ in range(3)]
    try:
        a, b, c = conns
        worker = register_worker(a)
        # Batch claims and finishes: successes, failures, aborts.
        for conn in conns:
            for _ in range(12):
                new_job(conn, "sql.batch", "batch")
        for round_ in range(6):
            conn = conns[round_ % 3]
            ids = claim(conn, "batch", worker, 6)
            time.sleep(rng.uniform(0.002, 0.04))
            statuses = ["succeeded", "succeeded", "succeeded", "failed", "aborted"]
            finish(conn, worker, {i: rng.choice(statuses) for i in ids})
        # Prefetched jobs, started later by finish_jobs, then finished.
        for _ in range(5):
            new_job(b, "sql.prefetched", "prefetch")
        first = claim(b, "prefetch", worker, 5, start=1)
        time.sleep(0.01)
        finish(b, worker, {first[0]: "succeeded"}, started=first[1:])
        time.sleep(0.02)
        finish(c, worker, {i: "succeeded" for i in first[1:]})
        # Failed attempts: retried, then failed for good (dead letter).
        for _ in range(4):
            new_job(a, "sql.flaky", "flaky")
        for attempt in range(2):
            for job in claim(a, "flaky", worker, 4):
                time.sleep(rng.uniform(0.001, 0.01))
                retry_at = "now()" if attempt == 0 else "NULL"
                c.execute(
                    "SELECT * FROM pgjobs.fail_job_attempt(%s, 'ValueError', 'boom',"
                    f" NULL, {retry_at}, NULL, NULL, NULL, false, NULL)",  # type: ignore[arg-type]
                    (job,),
                )
        # Interruptions (not failures), and an interrupted job whose abort
        # was requested (aborted).
        for _ in range(3):
            new_job(c, "sql.interrupted", "shutdown")
        ids = claim(c, "shutdown", worker, 3)
        a.execute("SELECT procrastinate_cancel_job_v1(%s, true, false)", (ids[0],))
        time.sleep(0.01)
        for job in ids:
            b.execute(
                "SELECT * FROM pgjobs.interrupt_job(%s, %s, 'shutdown', 3, NULL,"
                " NULL, NULL, NULL, false)",
                (job, worker),
            )
        # procrastinate's own functions: a retry, an abort; a breaker's
        # reschedule and a worker's release (both 'deferred_for_retry').
        for _ in range(4):
            new_job(a, "sql.procrastinate", "own")
        ids = claim(a, "own", worker, 4)
        time.sleep(0.005)
        b.execute(
            "SELECT procrastinate_retry_job_v2(%s, now(), NULL, NULL, NULL)", (ids[0],)
        )
        c.execute("SELECT procrastinate_finish_job_v1(%s, 'aborted', false)", (ids[1],))
        a.execute("SELECT pgjobs.reschedule_job(%s, now())", (ids[2],))
        b.execute("SELECT * FROM pgjobs.release_jobs(%s, %s)", (worker, [ids[3]]))
        # A todo job finished by finish_jobs is a cancellation: no attempt.
        cancelled = new_job(a, "sql.procrastinate", "cancel")
        finish(a, None, {cancelled: "succeeded"})
        # Expirations: the claim that meets them expires them.
        late = [new_job(b, "sql.late", "late") for _ in range(3)]
        b.execute(
            "SELECT pgjobs.store_job_deadlines(%s, now() - interval '1 second')",
            (late,),
        )
        assert claim(c, "late", worker, 5) == []
        # Then everything still waiting runs to success.
        for queue in ("flaky", "shutdown", "own"):
            ids = claim(b, queue, worker, 10)
            time.sleep(0.003)
            finish(b, worker, {i: "succeeded" for i in ids})
    finally:
        for conn in conns:
            conn.close()


async def test_the_view_matches_the_events(app: App, db_url: str) -> None:
    @app.task(name="app.quick")
    def quick(sleep: float) -> None:
        time.sleep(sleep)

    @app.task(
        name="app.flaky",
        pass_context=True,
        retry=RetryPolicy(max_attempts=3, base_delay=0, jitter="none"),
    )
    def flaky(context: JobContext, sleep: float) -> None:
        time.sleep(sleep)
        if context.job.attempts < 1:
            raise ValueError("first attempt fails")

    @app.task(name="app.doomed")
    def doomed() -> None:
        raise ValueError("always fails")

    rng = random.Random(2)
    with psycopg.connect(db_url) as conn:
        app.enqueue_many(
            conn, "app.quick", [{"sleep": rng.uniform(0, 0.03)} for _ in range(30)]
        )
        app.enqueue_many(
            conn, "app.flaky", [{"sleep": rng.uniform(0, 0.01)} for _ in range(6)]
        )
        app.enqueue_many(conn, "app.doomed", [{} for _ in range(3)])
    await run_worker(app)
    seed_through_sql(db_url)

    tasks = assert_same_stats(db_url)
    assert set(tasks) == {
        "app.quick",
        "app.flaky",
        "app.doomed",
        "sql.batch",
        "sql.prefetched",
        "sql.flaky",
        "sql.interrupted",
        "sql.procrastinate",
        "sql.late",
    }
    # What each path wrote is there (not only equal to the events).
    assert tasks["app.quick"]["succeeded"] == 30
    assert (tasks["app.flaky"]["retried"], tasks["app.flaky"]["succeeded"]) == (6, 6)
    assert tasks["app.doomed"]["failed"] == 3
    assert tasks["sql.batch"]["runs"] == 36
    assert (tasks["sql.prefetched"]["started"], tasks["sql.prefetched"]["runs"]) == (
        5,
        5,
    )
    assert (tasks["sql.flaky"]["retried"], tasks["sql.flaky"]["failed"]) == (4, 4)
    interrupted = tasks["sql.interrupted"]
    assert (interrupted["interrupted"], interrupted["aborted"]) == (2, 1)
    assert interrupted["succeeded"] == 2 and interrupted["failure_rate"] == 0
    own = tasks["sql.procrastinate"]
    assert (own["retried"], own["aborted"], own["succeeded"]) == (3, 1, 3)
    assert (tasks["sql.late"]["expired"], tasks["sql.late"]["started"]) == (3, 0)


def test_percentiles_of_spread_run_times(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    # 400 run times from 1 ms to 100 s (log-uniform), through the trigger path.
    rng = random.Random(7)
    for _ in range(400):
        run_s = 10 ** rng.uniform(-3, 2)
        add_job(
            conn,
            task="spread",
            status="succeeded",
            events=[
                ("deferred", 200 + run_s),
                ("started", 150 + run_s),
                ("succeeded", 150),
            ],
        )
    conn.commit()
    [row] = assert_same_stats(db_url).values()
    assert row["runs"] == 400 and row["mean_wait_s"] == pytest.approx(50)


def test_a_longer_window_and_old_events(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    add_job(conn, task="sync", status="succeeded", events=finished(600, 2))
    add_job(conn, task="sync", status="succeeded", events=finished(2 * 3600, 30))
    conn.commit()
    [sync] = stats(db_url, "SELECT * FROM pgjobs.task_stats").values()
    assert (sync["runs"], sync["max_s"]) == (1, 2.0)
    with psycopg.connect(db_url) as wide:
        wide.execute("SET pgjobs.stats_window = '3 hours'")
        row = wide.execute(
            "SELECT runs, max_s, p50_s FROM pgjobs.task_stats"
        ).fetchone()
    # One run of 2 s and one of 30 s: p50 between them, as percentile_cont.
    assert row is not None and row[:2] == (2, 30.0)
    assert row[2] == pytest.approx(16.0, rel=0.05)


def test_jobs_deleted_as_they_end_still_count(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    # delete_jobs: their events go with them; the rollups keep the attempts.
    worker = register_worker(conn)
    ids = [new_job(conn, "gone", "default") for _ in range(3)]
    conn.commit()
    claimed = claim(conn, "default", worker, 3)
    conn.commit()
    conn.execute(
        "SELECT * FROM pgjobs.finish_jobs(%s, %s::procrastinate_job_status[], %s,"
        " '{}', %s)",
        (claimed, ["succeeded", "succeeded", "failed"], [True] * 3, worker),
    )
    conn.commit()
    assert conn.execute(
        "SELECT count(*) FROM procrastinate_jobs WHERE id = ANY(%s)", (ids,)
    ).fetchone() == (0,)
    [gone] = stats(db_url, "SELECT * FROM pgjobs.task_stats").values()
    assert (gone["started"], gone["runs"], gone["succeeded"], gone["failed"]) == (
        3,
        3,
        2,
        1,
    )


def test_the_migration_counts_the_window_already_there(empty_db_url: str) -> None:
    schema.upgrade(empty_db_url, "0018")
    with psycopg.connect(empty_db_url) as conn:
        add_job(
            conn,
            task="sync",
            status="succeeded",
            events=[("deferred", 110), ("started", 100), ("succeeded", 98)],
        )
        add_job(
            conn,
            task="sync",
            status="failed",
            attempts=2,
            events=[
                ("deferred", 55),
                ("started", 50),
                ("deferred_for_retry", 49),
                ("scheduled", 35),
                ("started", 30),
                ("failed", 20),
            ],
        )
        add_job(conn, task="sync", status="succeeded", events=finished(7200, 100))
        add_job(
            conn,
            task="report",
            status="doing",
            events=[("deferred", 9), ("started", 3)],
        )
        late = add_job(
            conn, task="report", status="cancelled", events=[("deferred", 9)]
        )
        conn.execute(
            "INSERT INTO pgjobs.job_deadlines (job_id, expires_at, expired_at)"
            " VALUES (%s, now() - interval '5 seconds', now() - interval '5 seconds')",
            (late,),
        )
        conn.commit()
    before = stats(empty_db_url, "SELECT * FROM pgjobs.task_stats")
    schema.upgrade(empty_db_url)
    after = assert_same_stats(empty_db_url)
    assert set(after) == set(before) == {"sync", "report"}
    for task, row in before.items():
        assert {c: after[task][c] for c in COUNTS} == {c: row[c] for c in COUNTS}
    assert after["sync"]["runs"] == 3 and after["report"]["expired"] == 1


def test_retention_prunes_old_rollups(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    add_job(conn, task="old", status="succeeded", events=finished(8 * 86400, 1))
    add_job(conn, task="recent", status="succeeded", events=finished(6 * 86400, 1))
    conn.commit()
    policy = retention.RetentionPolicy(succeeded_after=datetime.timedelta(days=30))
    result = retention.prune(db_url, policy, dry_run=True)
    # The old job's start, its outcome and its run time's histogram row.
    assert result.stats_rollups == 3
    result = retention.prune(db_url, policy)
    assert result.stats_rollups == 3
    left = conn.execute(
        "SELECT DISTINCT task_name FROM pgjobs.task_rollups ORDER BY 1"
    ).fetchall()
    assert left == [("recent",)]


async def test_every_worker_prunes_old_rollups(
    app: App, conn: psycopg.Connection[Any]
) -> None:
    # No retention policy is needed: a side task of every worker does it.
    assert "stats_rollups_pruner" in [
        getattr(task, "__name__", "") for task in app.worker_side_tasks
    ]
    add_job(conn, task="old", status="succeeded", events=finished(8 * 86400, 1))
    add_job(conn, task="recent", status="succeeded", events=finished(6 * 86400, 1))
    conn.commit()
    async with app.open_async():
        deleted = await stats_pruning.prune_stats_rollups(
            app.connector, datetime.timedelta(days=7)
        )
    assert deleted == 3
    left = conn.execute(
        "SELECT DISTINCT task_name FROM pgjobs.task_rollups ORDER BY 1"
    ).fetchall()
    assert left == [("recent",)]
