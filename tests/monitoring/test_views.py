"""The monitoring views, fed with jobs and events at known times."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest

from pgjobs.monitoring import views
from pgjobs.monitoring.views import MonitoringOptions
from tests.support import run_cli
from tests.support.factories import add_dead_letter, add_job, add_worker, finished

VIEWS = [
    "queue_stats",
    "task_stats",
    "workers",
    "stalled_jobs",
    "breaker_states",
    "health",
]


def by_name(rows: list[Any], key: str) -> dict[str, Any]:
    return {getattr(row, key): row for row in rows}


def test_empty_database_has_no_rows_and_is_healthy(db_url: str) -> None:
    snapshot = views.snapshot(db_url)
    assert snapshot.queues == snapshot.tasks == snapshot.workers == []
    assert snapshot.problems == [] and snapshot.stalled_jobs == []


def test_views_never_expose_job_arguments(conn: psycopg.Connection[Any]) -> None:
    rows = conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = 'pgjobs' AND table_name = ANY(%s)",
        (VIEWS,),
    ).fetchall()
    assert {r[0] for r in rows} == set(VIEWS)
    assert not [r for r in rows if r[1] in ("args", "task_kwargs", "traceback")]


def test_queue_stats(conn: psycopg.Connection[Any], db_url: str) -> None:
    worker = add_worker(conn)
    # emails: two ready jobs (queued 120 s and 30 s ago), one for later, one
    # running, three succeeded and one failed within the hour, one succeeded
    # two hours ago, a retried job ready since its retry time (10 s ago).
    add_job(conn, queue="emails", events=[("deferred", 120)])
    add_job(conn, queue="emails", events=[("deferred", 30)])
    add_job(conn, queue="emails", scheduled_in=3600, events=[("deferred", 5)])
    add_job(
        conn,
        queue="emails",
        scheduled_in=-10,
        attempts=1,
        events=[
            *finished(3000, 1, "deferred_for_retry")[:2],
            ("deferred_for_retry", 50),
        ],
    )
    add_job(
        conn, queue="emails", status="doing", worker_id=worker, events=[("started", 1)]
    )
    for ago in (600, 700, 800):
        add_job(conn, queue="emails", status="succeeded", events=finished(ago, 2))
    add_job(conn, queue="emails", status="failed", events=finished(300, 1, "failed"))
    add_job(conn, queue="emails", status="succeeded", events=finished(7200, 2))
    add_dead_letter(conn, queue="emails")
    add_dead_letter(conn, queue="emails", created_ago=86400)
    add_dead_letter(conn, queue="emails", replayed=True)
    # reports: only a dead letter.
    add_dead_letter(conn, queue="reports", task="report")
    conn.commit()

    queues = by_name(views.queue_stats(db_url), "queue_name")
    assert set(queues) == {"emails", "reports"}
    emails = queues["emails"]
    assert (emails.waiting, emails.scheduled, emails.running) == (3, 1, 1)
    assert (emails.succeeded, emails.failed, emails.dead_letters) == (3, 1, 2)
    assert 120 <= emails.oldest_waiting_s < 130
    reports = queues["reports"]
    assert (reports.waiting, reports.succeeded, reports.dead_letters) == (0, 0, 1)
    assert reports.oldest_waiting_s == 0

    # A 3-hour window also counts the job that succeeded two hours ago.
    wide = views.queue_stats(db_url, MonitoringOptions(stats_window=3 * 3600))
    assert by_name(wide, "queue_name")["emails"].succeeded == 4
    # The same from plain SQL, with the session setting.
    with psycopg.connect(db_url, autocommit=True) as sql_conn:
        sql_conn.execute("SET pgjobs.stats_window = '3 hours'")
        row = sql_conn.execute(
            "SELECT succeeded FROM pgjobs.queue_stats WHERE queue_name = 'emails'"
        ).fetchone()
    assert row == (4,)


def test_oldest_waiting_counts_from_retry_time(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    add_job(
        conn,
        scheduled_in=-10,
        events=[("deferred", 3000), ("started", 2990), ("deferred_for_retry", 50)],
    )
    conn.commit()
    [queue] = views.queue_stats(db_url)
    assert queue.waiting == 1
    assert 10 <= queue.oldest_waiting_s < 15


def test_task_stats(conn: psycopg.Connection[Any], db_url: str) -> None:
    # A: queued 110 s ago, ran 100 -> 98 s ago (2 s).
    add_job(
        conn,
        task="sync",
        status="succeeded",
        events=[("deferred", 110), ("started", 100), ("succeeded", 98)],
    )
    # B: scheduled to run 65 s ago, started 60 s ago, ran 4 s.
    add_job(
        conn,
        task="sync",
        status="succeeded",
        events=[
            ("deferred", 70),
            ("scheduled", 65),
            ("started", 60),
            ("succeeded", 56),
        ],
    )
    # C: first attempt 1 s then retried (due 35 s ago), second attempt 10 s, failed.
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
    # D: two hours ago, outside the window.
    add_job(conn, task="sync", status="succeeded", events=finished(7200, 100))
    # Another task, still running.
    add_job(
        conn, task="report", status="doing", events=[("deferred", 9), ("started", 3)]
    )
    conn.commit()

    tasks = by_name(views.task_stats(db_url), "task_name")
    assert set(tasks) == {"sync", "report"}
    sync = tasks["sync"]
    assert (sync.started, sync.runs) == (4, 4)
    assert (sync.succeeded, sync.failed, sync.retried, sync.aborted) == (2, 1, 1, 0)
    assert sync.failure_rate == pytest.approx(0.5)
    # Run times 1, 2, 4, 10 s (continuous percentiles, within the run-time
    # buckets' 5%).
    assert sync.p50_s == pytest.approx(3.0, rel=0.05)
    assert sync.p95_s == pytest.approx(9.1, rel=0.05)
    assert sync.p99_s == pytest.approx(9.82, rel=0.05)
    assert sync.mean_s == pytest.approx(4.25)
    assert sync.max_s == pytest.approx(10.0)
    # Waits 10, 5, 5, 5 s.
    assert sync.mean_wait_s == pytest.approx(6.25)

    report = tasks["report"]
    assert (report.started, report.runs, report.succeeded) == (1, 0, 0)
    assert report.failure_rate is None and report.p50_s is None
    assert report.mean_wait_s == pytest.approx(6.0)


def test_workers_and_stalled_jobs(conn: psycopg.Connection[Any], db_url: str) -> None:
    live = add_worker(conn, heartbeat_ago=2)
    silent = add_worker(conn, heartbeat_ago=60)
    for _ in range(2):
        add_job(conn, status="doing", worker_id=live, events=[("started", 5)])
    stalled_one = add_job(
        conn, task="etl", status="doing", worker_id=silent, events=[("started", 90)]
    )
    orphan = add_job(conn, task="etl", status="doing", events=[("started", 40)])
    conn.commit()

    workers = {w.worker_id: w for w in views.workers(db_url)}
    assert workers[live].alive and workers[live].running_jobs == 2
    assert not workers[silent].alive and workers[silent].running_jobs == 1
    assert 60 <= workers[silent].heartbeat_age_s < 70

    stalled = views.stalled_jobs(db_url)
    assert [s.job_id for s in stalled] == [stalled_one, orphan]
    assert stalled[0].worker_id == silent and stalled[0].last_heartbeat is not None
    assert stalled[1].worker_id is None and stalled[1].last_heartbeat is None
    assert stalled[0].started_at is not None

    # With a 2-minute stalled timeout, only the orphan (no worker) is stalled.
    patient = MonitoringOptions(stalled_after=120)
    assert [s.job_id for s in views.stalled_jobs(db_url, patient)] == [orphan]
    assert all(w.alive for w in views.workers(db_url, patient))


def test_health(conn: psycopg.Connection[Any], db_url: str) -> None:
    silent = add_worker(conn, heartbeat_ago=60)
    stalled = add_job(
        conn, task="etl", status="doing", worker_id=silent, events=[("started", 90)]
    )
    add_job(conn, queue="slow", events=[("deferred", 600)])  # waiting 10 min
    add_job(conn, queue="fast", events=[("deferred", 5)])
    add_dead_letter(conn, task="billing", created_ago=60)
    add_dead_letter(conn, task="billing", created_ago=120)
    add_dead_letter(conn, task="old", created_ago=7200)
    add_dead_letter(conn, task="handled", replayed=True)
    conn.commit()

    problems = views.health(db_url)
    assert [(p.check, p.subject, p.severity) for p in problems] == [
        ("stalled_job", f"job {stalled}", "critical"),
        ("new_dead_letters", "task billing", "warning"),
        ("queue_latency", "queue slow", "warning"),
    ]
    assert f"worker {silent} silent for" in problems[0].detail
    assert problems[1].detail.startswith("2 new dead letter(s) in the last 01:00:00")

    relaxed = MonitoringOptions(
        stalled_after=300, max_latency=900, dead_letter_threshold=2
    )
    assert views.health(db_url, relaxed) == []
    # Three hours of dead letters: 'old' counts too.
    wide = MonitoringOptions(dead_letter_window=3 * 3600, stalled_after=300)
    assert {p.subject for p in views.health(db_url, wide)} == {
        "task billing",
        "task old",
        "queue slow",
    }


def test_breaker_states_view(conn: psycopg.Connection[Any], db_url: str) -> None:
    conn.execute(
        "INSERT INTO pgjobs.breakers (name, state, failure_threshold,"
        " recovery_window, success_threshold, failure_count, opened_at, reopens_at,"
        " last_error) VALUES ('crm', 'open', 3, '1 minute', 1, 3, now(),"
        " now() + interval '1 minute', 'secret detail')"
    )
    conn.commit()
    [breaker] = views.snapshot(db_url).breakers
    assert (breaker.name, breaker.state, breaker.failure_count) == ("crm", "open", 3)
    assert breaker.reopens_at is not None


def test_health_reports_overdue_schedules(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    # A daily schedule active for 2 days without a success is overdue (grace:
    # 10% of a day); an hourly one that succeeded a minute ago is not.
    conn.execute(
        "INSERT INTO pgjobs.schedules (name, task_name, cron, expected_interval,"
        " next_run_at, active_since, last_success_at) VALUES"
        " ('nightly', 'reports.nightly', '0 0 * * *', '1 day', now(),"
        "  now() - interval '2 days', NULL),"
        " ('hourly', 'sync.hourly', '0 * * * *', '1 hour', now(),"
        "  now() - interval '2 days', now() - interval '1 minute')"
    )
    conn.commit()
    problems = views.health(db_url)
    assert [(p.check, p.subject, p.severity) for p in problems] == [
        ("overdue_schedule", "schedule nightly", "critical")
    ]
    assert problems[0].detail == (
        "reports.nightly: last success never, expected every 1 day"
    )
    conn.execute("UPDATE pgjobs.schedules SET paused = true WHERE name = 'nightly'")
    conn.commit()
    assert views.health(db_url) == []


def test_health_reports_dead_rows_piling_up(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    # Autovacuum off on the jobs table: 200 of 300 jobs deleted leave 200 dead
    # rows there (and in the event log, their 'started' events, by cascade)
    # beside 100 live.
    for table in ("procrastinate_jobs", "pgjobs.event_log"):
        conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    conn.execute(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, args)"
        " SELECT 'q', 't', '{}' FROM generate_series(1, 300)"
    )
    conn.execute(
        "INSERT INTO pgjobs.event_log (job_id, type)"
        " SELECT id, 'started' FROM procrastinate_jobs"
    )
    conn.commit()
    conn.execute("DELETE FROM procrastinate_jobs WHERE id % 3 <> 0")
    conn.commit()
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.commit()

    assert views.health(db_url) == []  # below the default 100,000
    problems = views.health(db_url, MonitoringOptions(max_dead_rows=50))
    assert [(p.check, p.subject, p.severity) for p in problems] == [
        ("dead_rows", "table pgjobs.event_log", "warning"),
        ("dead_rows", "table procrastinate_jobs", "warning"),
    ]
    detail = problems[1].detail
    assert detail.startswith("200 dead row(s) beside 100 live: autovacuum is ")
    assert "VACUUM procrastinate_jobs" in detail
    # The same from the CLI, by option and by setting.
    by_option = run_cli("health", "--max-dead-rows", "50", db_url=db_url)
    assert by_option.returncode == 1 and "dead_rows" in by_option.stdout
    by_setting = run_cli("health", db_url=db_url, PGJOBS_HEALTH_MAX_DEAD_ROWS="50")
    assert by_setting.returncode == 1 and "dead_rows" in by_setting.stdout
    assert run_cli("health", "--max-dead-rows", "-1", db_url=db_url).returncode == 2

    conn.autocommit = True
    conn.execute("VACUUM procrastinate_jobs, pgjobs.event_log")
    conn.execute("SELECT pg_stat_force_next_flush()")
    assert views.health(db_url, MonitoringOptions(max_dead_rows=50)) == []


def _xmin_rows(db_url: str, **options: Any) -> list[views.Problem]:
    return [
        p
        for p in views.health(db_url, MonitoringOptions(**options))
        if p.check == "xmin_horizon"
    ]


def test_health_reports_a_transaction_holding_the_xmin_horizon(db_url: str) -> None:
    with psycopg.connect(db_url, application_name="nightly-report") as holder:
        # A snapshot taken and kept: VACUUM may remove nothing newer.
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT 1")
        pid = holder.info.backend_pid
        assert _xmin_rows(db_url) == []  # within the default 5 minutes
        time.sleep(0.6)
        [problem] = _xmin_rows(db_url, max_xmin_age=0.5)
        assert (problem.subject, problem.severity) == (f"pid {pid}", "warning")
        assert problem.detail.startswith(
            "transaction of postgres (application nightly-report, idle in"
            " transaction) open for "
        ), problem.detail
        assert "threshold 00:00:00.5" in problem.detail
        assert "holds back the xmin horizon" in problem.detail
        # The CLI: by option and by setting, exit 1 with the row shown.
        by_option = run_cli("health", "--max-xmin-age", "0.5s", db_url=db_url)
        assert by_option.returncode == 1, by_option.stderr
        assert "xmin_horizon" in by_option.stdout
        assert f"pid {pid}" in by_option.stdout
        by_setting = run_cli(
            "health", "--json", db_url=db_url, PGJOBS_HEALTH_MAX_XMIN_AGE="0.5"
        )
        assert by_setting.returncode == 1, by_setting.stderr
        assert f'"subject": "pid {pid}"' in by_setting.stdout
        assert run_cli("health", db_url=db_url).returncode == 0  # 5 min default
        assert (
            run_cli("health", "--max-xmin-age", "soon", db_url=db_url).returncode == 2
        )
        holder.commit()
    assert _xmin_rows(db_url, max_xmin_age=0.5) == []
    assert run_cli("health", "--max-xmin-age", "0.5s", db_url=db_url).returncode == 0


def test_health_reports_an_old_prepared_transaction(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    [(prepared_ok,)] = conn.execute(
        "SELECT current_setting('max_prepared_transactions')::int > 0"
    ).fetchall()
    if not prepared_ok:
        pytest.skip("max_prepared_transactions is 0 on this server")
    conn.execute("INSERT INTO procrastinate_workers DEFAULT VALUES")
    conn.execute("PREPARE TRANSACTION 'pgjobs-test-forgotten'")
    try:
        time.sleep(0.6)
        [problem] = _xmin_rows(db_url, max_xmin_age=0.5)
        assert problem.subject == "prepared transaction pgjobs-test-forgotten"
        assert problem.detail.startswith("prepared transaction of postgres waiting")
    finally:
        conn.execute("ROLLBACK PREPARED 'pgjobs-test-forgotten'")
    assert _xmin_rows(db_url, max_xmin_age=0.5) == []
