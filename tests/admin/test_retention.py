"""Retention: pruning by age (exact boundaries), keep-last-N, batches, the
periodic task, and ``pgjobs prune``."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs import App, ConfigError, InvalidJobOptions, Settings
from pgjobs.admin import retention
from pgjobs.admin.retention import RetentionPolicy
from pgjobs.db import queries
from tests.support import run_cli
from tests.support.factories import add_dead_letter, add_job, finished

DAY = 86400.0


def db_now(conn: psycopg.Connection[Any]) -> datetime.datetime:
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def job_ids(conn: psycopg.Connection[Any]) -> set[int]:
    return {r[0] for r in conn.execute("SELECT id FROM procrastinate_jobs").fetchall()}


def add_error(conn: psycopg.Connection[Any], failed_ago: float) -> None:
    conn.execute(
        "INSERT INTO pgjobs.job_errors (job_id, task_name, queue_name, attempt,"
        " error_type, failed_at) VALUES (0, 'task', 'default', 1, 'ValueError',"
        " now() - make_interval(secs => %s))",
        (failed_ago,),
    )


def test_prune_by_age_at_the_exact_cutoff(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    ms = 0.001
    old_ok = add_job(conn, status="succeeded", events=finished(7 * DAY + 5 + ms, 5))
    at_cutoff = add_job(conn, status="succeeded", events=finished(7 * DAY + 5, 5))
    just_inside = add_job(
        conn, status="succeeded", events=finished(7 * DAY + 5 - ms, 5)
    )
    recent = add_job(conn, status="succeeded", events=finished(DAY, 5))
    old_failed = add_job(
        conn, status="failed", events=finished(30 * DAY + 1 + ms, 1, "failed")
    )
    failed_at_cutoff = add_job(
        conn, status="failed", events=finished(30 * DAY + 1, 1, "failed")
    )
    old_cancelled = add_job(
        conn,
        status="cancelled",
        events=[("deferred", 40 * DAY), ("cancelled", 31 * DAY)],
    )
    young_aborted = add_job(
        conn, status="aborted", events=finished(29 * DAY, 1, "aborted")
    )
    # Never pruned: waiting and running jobs, however old their events.
    old_todo = add_job(conn, status="todo", events=[("deferred", 60 * DAY)])
    old_doing = add_job(conn, status="doing", events=finished(60 * DAY, 0, "started"))
    # Failed long ago, then retried by hand and succeeded recently: its last
    # event is recent, so it stays.
    retried = add_job(
        conn,
        status="succeeded",
        events=[
            *finished(50 * DAY, 1, "failed"),
            ("retried", 2 * DAY),
            ("started", 2 * DAY - 1),
            ("succeeded", 2 * DAY - 2),
        ],
    )
    old_letter = add_dead_letter(conn, created_ago=90 * DAY + ms)
    kept_letter = add_dead_letter(conn, created_ago=90 * DAY)
    add_error(conn, 30 * DAY + ms)
    add_error(conn, 30 * DAY)
    now = db_now(conn)
    conn.commit()
    # The task stats rollups of the attempts older than 7 days go too.
    row = conn.execute(
        "SELECT count(*) FROM pgjobs.task_rollups"
        " WHERE minute < %s - interval '7 days'",
        (now,),
    ).fetchone()
    assert row is not None and row[0] > 0
    rollups = row[0]

    policy = RetentionPolicy(
        succeeded_after=datetime.timedelta(days=7),
        failed_after=datetime.timedelta(days=30),
        dead_letters_after=datetime.timedelta(days=90),
    )
    dry = retention.prune(db_url, policy, dry_run=True, now=now)
    assert dry == retention.PruneResult(
        succeeded_jobs=1,
        failed_jobs=2,
        dead_letters=1,
        error_history=1,
        stats_rollups=rollups,
        dry_run=True,
    )
    before = job_ids(conn)
    assert len(before) == 11

    result = retention.prune(db_url, policy, now=now, batch_size=1)
    assert result == retention.PruneResult(
        succeeded_jobs=1,
        failed_jobs=2,
        dead_letters=1,
        error_history=1,
        stats_rollups=rollups,
        dry_run=False,
    )
    assert job_ids(conn) == before - {old_ok, old_failed, old_cancelled}
    assert {at_cutoff, just_inside, recent, failed_at_cutoff, young_aborted} <= (
        job_ids(conn)
    )
    assert {old_todo, old_doing, retried} <= job_ids(conn)
    letters = {r[0] for r in conn.execute("SELECT id FROM pgjobs.dead_letters")}
    assert letters == {kept_letter} and old_letter not in letters
    [(errors,)] = conn.execute("SELECT count(*) FROM pgjobs.job_errors").fetchall()
    assert errors == 1
    # Their events went with them.
    [(orphans,)] = conn.execute(
        "SELECT count(*) FROM procrastinate_events WHERE job_id = ANY(%s)",
        ([old_ok, old_failed, old_cancelled],),
    ).fetchall()
    assert orphans == 0


def test_keep_last_n_per_task(conn: psycopg.Connection[Any], db_url: str) -> None:
    a_succeeded = [
        add_job(conn, task="a", status="succeeded", events=finished(10, 1))
        for _ in range(5)
    ]
    b_succeeded = [
        add_job(conn, task="b", status="succeeded", events=finished(10, 1))
        for _ in range(2)
    ]
    a_failed = add_job(conn, task="a", status="failed", events=finished(9, 1, "failed"))
    a_cancelled = add_job(conn, task="a", status="cancelled", events=[("cancelled", 8)])
    a_waiting = [add_job(conn, task="a", events=[("deferred", 5)]) for _ in range(5)]
    a_running = add_job(conn, task="a", status="doing", events=[("started", 1)])
    conn.commit()

    policy = RetentionPolicy(keep_succeeded=3, keep_failed=1)
    dry = retention.prune(db_url, policy, dry_run=True)
    assert (dry.succeeded_jobs, dry.failed_jobs) == (2, 1)
    # Small batches with pauses between them (deleting a quarter of the time)
    # delete the same rows.
    result = retention.prune(
        db_url, policy, batch_size=1, batch_pause=0.01, duty_cycle=0.25
    )
    assert (result.succeeded_jobs, result.failed_jobs) == (2, 1)
    remaining = job_ids(conn)
    assert remaining == {
        *a_succeeded[2:],
        *b_succeeded,
        a_cancelled,
        *a_waiting,
        a_running,
    }
    assert a_failed not in remaining

    # keep 0: every finished job goes, waiting and running stay.
    retention.prune(db_url, RetentionPolicy(keep_succeeded=0, keep_failed=0))
    assert job_ids(conn) == {*a_waiting, a_running}


def test_age_or_rank_either_prunes(conn: psycopg.Connection[Any], db_url: str) -> None:
    old = add_job(conn, task="a", status="succeeded", events=finished(3 * DAY, 1))
    newer = [
        add_job(conn, task="a", status="succeeded", events=finished(10, 1))
        for _ in range(3)
    ]
    conn.commit()
    policy = RetentionPolicy(
        succeeded_after=datetime.timedelta(days=1), keep_succeeded=2
    )
    assert retention.prune(db_url, policy).succeeded_jobs == 2
    assert job_ids(conn) == set(newer[1:]) and old not in job_ids(conn)


def test_policy_validation(db_url: str) -> None:
    with pytest.raises(InvalidJobOptions, match="nothing to prune"):
        retention.prune(db_url, RetentionPolicy())
    with pytest.raises(InvalidJobOptions, match="must not be negative"):
        RetentionPolicy(keep_failed=-1)
    with pytest.raises(InvalidJobOptions, match="batch_pause must not be negative"):
        retention.prune(db_url, RetentionPolicy(keep_failed=1), batch_pause=-1)
    with pytest.raises(InvalidJobOptions, match="duty_cycle must be in"):
        retention.prune(db_url, RetentionPolicy(keep_failed=1), duty_cycle=0)
    with pytest.raises(InvalidJobOptions, match="timezone-aware"):
        retention.prune(
            db_url,
            RetentionPolicy(keep_failed=1),
            now=datetime.datetime(2024, 1, 1),
        )


def retention_settings(db_url: str, tmp_path: Path, **values: Any) -> Settings:
    return Settings(
        database_url=db_url, embedded_dir=tmp_path / "unused", _env_file=None, **values
    )  # type: ignore[call-arg]


def test_periodic_task_registered_only_when_configured(
    conn: psycopg.Connection[Any], db_url: str, tmp_path: Path
) -> None:
    plain = App(settings=retention_settings(db_url, tmp_path))
    assert retention.TASK_NAME not in plain.tasks

    app = App(
        settings=retention_settings(
            db_url,
            tmp_path,
            retention_succeeded_days=1,
            retention_keep_failed=0,
            retention_schedule="*/5 * * * *",
        )
    )
    task = app.tasks[retention.TASK_NAME]
    [periodic] = [
        p for p in app.periodic_registry.periodic_tasks.values() if p.task is task
    ]
    assert periodic.cron == "*/5 * * * *"

    old = add_job(conn, status="succeeded", events=finished(2 * DAY, 1))
    young = add_job(conn, status="succeeded", events=finished(10, 1))
    failed = add_job(conn, status="failed", events=finished(10, 1, "failed"))
    conn.commit()
    # What the worker runs at each tick.
    counts = task(timestamp=0)
    assert counts["succeeded_jobs"] == 1 and counts["failed_jobs"] == 1
    assert job_ids(conn) == {young} and {old, failed}.isdisjoint(job_ids(conn))


def test_invalid_retention_schedule(db_url: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="PGJOBS_RETENTION_SCHEDULE"):
        App(
            settings=retention_settings(
                db_url, tmp_path, retention_keep_failed=5, retention_schedule="often"
            )
        )


def test_cli_prune(conn: psycopg.Connection[Any], db_url: str) -> None:
    old = add_job(conn, status="succeeded", events=finished(8 * DAY, 1))
    young = add_job(conn, status="succeeded", events=finished(DAY, 1))
    add_dead_letter(conn, created_ago=100 * DAY)
    conn.commit()

    dry = run_cli(
        "prune",
        "--succeeded-older-than",
        "7d",
        "--dead-letters-older-than",
        "90d",
        "--dry-run",
        "--json",
        db_url=db_url,
    )
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout) == {
        "succeeded_jobs": 1,
        "failed_jobs": 0,
        "dead_letters": 1,
        "error_history": 0,
        "stats_rollups": 3,  # the old job's start, outcome and run time
        "dry_run": True,
    }
    assert job_ids(conn) == {old, young}

    done = run_cli("prune", "--succeeded-older-than", "7d", db_url=db_url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "deleted: 1 succeeded jobs, 0 failed jobs, 0 dead letters, 0 error history,"
        " 3 stats rollups"
    )
    assert job_ids(conn) == {young}

    # No option: the settings decide; none set is an error.
    nothing = run_cli("prune", db_url=db_url)
    assert nothing.returncode == 1
    assert nothing.stderr.startswith("Error: nothing to prune")
    from_settings = run_cli(
        "prune", "--json", db_url=db_url, PGJOBS_RETENTION_KEEP_SUCCEEDED="0"
    )
    assert json.loads(from_settings.stdout)["succeeded_jobs"] == 1
    assert job_ids(conn) == set()

    bad = run_cli("prune", "--succeeded-older-than", "soon", db_url=db_url)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1  # usage
    assert "invalid age 'soon'" in bad.stderr


def list_oldest_successes(conn: psycopg.Connection[Any]) -> tuple[list[int], str]:
    """A prune's first batch of 100 succeeded jobs older than an hour, after
    ANALYZE, and the plan that listed them."""
    conn.execute("ANALYZE procrastinate_jobs")
    conn.execute("ANALYZE pgjobs.event_log")
    sql = queries.query("retention_jobs_finished_before")
    params = {"status": "succeeded", "older_than": "1 hour", "now": None, "limit": 100}
    listed = [row[0] for row in conn.execute(sql, params).fetchall()]
    plan = "\n".join(
        row[0] for row in conn.execute("EXPLAIN (ANALYZE, COSTS OFF) " + sql, params)
    )
    return listed, plan


def test_listing_old_jobs_walks_the_index_one_batch_at_a_time(
    conn: psycopg.Connection[Any],
) -> None:
    """Each batch of a prune lists its jobs from the oldest finishing events
    and stops: no scan of every recent event per batch (that made listing,
    not deleting, the cost of pruning under load)."""
    conn.execute(
        "WITH jobs AS ("
        "  INSERT INTO procrastinate_jobs (queue_name, task_name, args, status)"
        "  SELECT 'default', 'task', '{}', 'succeeded' FROM generate_series(1, 20000)"
        "  RETURNING id)"
        " INSERT INTO procrastinate_events (job_id, type, at)"
        " SELECT id, type::procrastinate_job_event_type,"
        "        now() - make_interval(secs => 20000 - id % 20000)"
        "   FROM jobs, unnest(ARRAY['deferred', 'started', 'succeeded']) AS type"
    )
    listed, plan = list_oldest_successes(conn)
    assert len(listed) == 100
    oldest = conn.execute(
        "SELECT job_id FROM procrastinate_events WHERE type = 'succeeded'"
        " ORDER BY at LIMIT 100"
    ).fetchall()
    assert listed == [row[0] for row in oldest]
    assert "pgjobs_events_type_at_idx" in plan, plan
    assert "Seq Scan" not in plan and "Hash" not in plan, plan


def test_listing_old_successes_kept_in_their_rows_walks_their_index(
    conn: psycopg.Connection[Any],
) -> None:
    """Successes written by pgjobs' worker keep their 'succeeded' event in
    the job row (finished_at): listed from pgjobs_jobs_finished_idx, oldest
    first, a batch at a time, and the log is not walked for them."""
    conn.execute(
        "INSERT INTO procrastinate_jobs"
        "       (queue_name, task_name, args, status, started_at, finished_at)"
        " SELECT 'default', 'task', '{}', 'succeeded',"
        "        now() - make_interval(secs => 20001 - i),"
        "        now() - make_interval(secs => 20000 - i)"
        "   FROM generate_series(1, 20000) AS i"
    )
    listed, plan = list_oldest_successes(conn)
    oldest = conn.execute(
        "SELECT id FROM procrastinate_jobs ORDER BY finished_at LIMIT 100"
    ).fetchall()
    assert listed == [row[0] for row in oldest]
    assert "pgjobs_jobs_finished_idx" in plan, plan
    # (the log is empty: a sequential scan of it reads nothing)
    assert "Seq Scan on procrastinate_jobs" not in plan and "Hash" not in plan, plan
