"""Least-privilege roles: login roles in each group can do their job and no more."""

from __future__ import annotations

import json
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgjobs import App, Settings
from pgjobs.db import schema
from tests.support import run_cli
from tests.support.factories import add_job, finished

GROUPS = ("enqueuer", "worker", "monitor")
PASSWORD = "pw-Only4Tests"


def as_user(url: str, user: str) -> str:
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:{PASSWORD}@{host}"))


@pytest.fixture
def logins(db_url: str) -> Iterator[dict[str, str]]:
    """One login role per group (cluster-wide, so uniquely named and dropped)."""
    suffix = uuid.uuid4().hex[:8]
    names = {group: f"pgjobs_test_{group}_{suffix}" for group in GROUPS}
    with psycopg.connect(db_url, autocommit=True) as conn:
        for group, name in names.items():
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
                    sql.Identifier(name),
                    sql.Literal(PASSWORD),
                    sql.Identifier(f"pgjobs_{group}"),
                )
            )
    try:
        yield {group: as_user(db_url, name) for group, name in names.items()}
    finally:
        with psycopg.connect(db_url, autocommit=True) as conn:
            for name in names.values():
                conn.execute(
                    sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(name))
                )
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def denied(url: str, statement: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        try:
            conn.execute(statement)  # type: ignore[arg-type]
        except psycopg.errors.InsufficientPrivilege:
            return True
    return False


def app_for(url: str, tmp_path: Path) -> App:
    app = App(
        settings=Settings(
            database_url=url, embedded_dir=tmp_path / "unused", _env_file=None
        )  # type: ignore[call-arg]
    )

    @app.task(name="monitoring.add")
    def add(a: int) -> int:
        return a

    return app


def test_enqueuer_can_only_enqueue(
    db_url: str, logins: dict[str, str], tmp_path: Path, conn: psycopg.Connection[Any]
) -> None:
    url = logins["enqueuer"]
    app = app_for(url, tmp_path)
    add = app.tasks["monitoring.add"]
    with psycopg.connect(url) as enqueuer:
        job_id = app.enqueue(enqueuer, add, {"a": 1}, queueing_lock="once", delay=5)
        assert (
            app.enqueue(
                enqueuer, add, {"a": 1}, queueing_lock="once", on_duplicate="ignore"
            )
            is None
        )
    # procrastinate's own defer path works too.
    with app.open():
        other = add.defer(a=2)
    rows = conn.execute(
        "SELECT id, status::text FROM procrastinate_jobs ORDER BY id"
    ).fetchall()
    assert rows == [(job_id, "todo"), (other, "todo")]

    for statement in (
        "SELECT args FROM procrastinate_jobs",
        "UPDATE procrastinate_jobs SET status = 'succeeded'",
        "DELETE FROM procrastinate_jobs",
        "SELECT * FROM procrastinate_events",
        "SELECT * FROM pgjobs.queue_stats",
        "SELECT * FROM pgjobs.dead_letters",
        "INSERT INTO procrastinate_workers DEFAULT VALUES",
    ):
        assert denied(url, statement), statement


def test_monitor_reads_views_only(
    db_url: str, logins: dict[str, str], conn: psycopg.Connection[Any]
) -> None:
    add_job(conn, queue="emails", args='{"card": "4111"}', events=[("deferred", 5)])
    add_job(conn, task="send", status="succeeded", events=finished(50, 1))
    conn.commit()
    url = logins["monitor"]

    stats = run_cli("stats", "--json", db_url=url)
    assert stats.returncode == 0, stats.stderr
    assert {q["queue_name"] for q in json.loads(stats.stdout)["queues"]} == {
        "emails",
        "default",
    }
    health = run_cli("health", db_url=url)
    assert health.returncode == 0, health.stderr
    metrics = run_cli("metrics", db_url=url)
    assert metrics.returncode == 0 and "pgjobs_up 1.0" in metrics.stdout
    schedule_health = run_cli("schedules", "health", "--json", db_url=url)
    assert schedule_health.returncode == 0, schedule_health.stderr
    assert json.loads(schedule_health.stdout) == []

    for statement in (
        "SELECT args FROM procrastinate_jobs",
        "SELECT args FROM pgjobs.dead_letters",
        "SELECT * FROM pgjobs.job_errors",
        "SELECT * FROM pgjobs.breakers",
        "SELECT args FROM pgjobs.schedules",
        "DELETE FROM procrastinate_jobs",
        "SELECT pgjobs.defer_jobs(ARRAY[]::procrastinate_job_to_defer_v1[])",
    ):
        assert denied(url, statement), statement
    defer = run_cli(
        "defer",
        "monitoring.add",
        "--args",
        '{"a": 1}',
        "--app",
        "tests.support.apps.monitoring.app",
        db_url=url,
    )
    assert defer.returncode != 0 and "permission denied" in defer.stderr


def test_monitor_sees_who_holds_the_xmin_horizon(
    db_url: str, logins: dict[str, str]
) -> None:
    # The transaction of another role (the superuser): its start is hidden
    # from pgjobs_monitor in pg_stat_activity, not from pgjobs.health.
    with psycopg.connect(db_url, application_name="long-report") as holder:
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT 1")
        pid = holder.info.backend_pid
        time.sleep(0.6)
        with psycopg.connect(logins["monitor"], autocommit=True) as monitor:
            [(hidden,)] = monitor.execute(
                "SELECT xact_start IS NULL FROM pg_stat_activity WHERE pid = %s",
                [pid],
            ).fetchall()
            assert hidden
            monitor.execute("SET pgjobs.max_xmin_age = '0.5 seconds'")
            rows = monitor.execute(
                "SELECT subject, detail FROM pgjobs.health"
                " WHERE \"check\" = 'xmin_horizon'"
            ).fetchall()
        assert [subject for subject, _ in rows] == [f"pid {pid}"]
        assert "application long-report" in rows[0][1]
        health = run_cli("health", "--max-xmin-age", "0.5s", db_url=logins["monitor"])
        assert health.returncode == 1 and f"pid {pid}" in health.stdout
        holder.rollback()
    # SECURITY DEFINER: only the roles that read health may call it.
    assert denied(logins["enqueuer"], "SELECT * FROM pgjobs.xmin_holders()")
    assert not denied(logins["monitor"], "SELECT * FROM pgjobs.xmin_holders()")


@pytest.mark.slow
def test_worker_runs_jobs_but_not_the_application_tables(
    db_url: str, logins: dict[str, str], conn: psycopg.Connection[Any]
) -> None:
    conn.execute("CREATE TABLE app_orders (id int)")
    conn.execute(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, args) VALUES"
        " ('math', 'monitoring.add', '{\"a\": 1}'),"
        " ('default', 'monitoring.explode', '{\"reason\": \"boom\"}')"
    )
    conn.commit()
    url = logins["worker"]
    result = run_cli(
        "worker",
        "--app",
        "tests.support.apps.monitoring.app",
        "--one-shot",
        db_url=url,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    rows = conn.execute(
        "SELECT task_name, status::text FROM procrastinate_jobs ORDER BY id"
    ).fetchall()
    assert rows == [("monitoring.add", "succeeded"), ("monitoring.explode", "failed")]
    [(letters,)] = conn.execute("SELECT count(*) FROM pgjobs.dead_letters").fetchall()
    assert letters == 1
    # Retention runs as the worker too.
    prune = run_cli("prune", "--keep-succeeded", "0", "--keep-failed", "0", db_url=url)
    assert prune.returncode == 0, prune.stderr

    for statement in (
        "SELECT * FROM app_orders",
        "CREATE TABLE pgjobs.mine (id int)",
        "DROP TABLE procrastinate_jobs",
    ):
        assert denied(url, statement), statement


def test_roles_command_and_downgrade(
    db_url: str, logins: dict[str, str], conn: psycopg.Connection[Any]
) -> None:
    result = run_cli("roles", "--json", db_url=db_url)
    assert result.returncode == 0, result.stderr
    found = {r["name"]: r for r in json.loads(result.stdout)}
    assert list(found) == ["pgjobs_enqueuer", "pgjobs_worker", "pgjobs_monitor"]
    for group, url in logins.items():
        member = urllib.parse.urlsplit(url).username
        role = found[f"pgjobs_{group}"]
        assert role["exists"] and role["granted"] and member in role["members"]
    table = run_cli("roles", db_url=db_url)
    assert table.stdout.splitlines()[0].split() == [
        "ROLE",
        "PURPOSE",
        "EXISTS",
        "GRANTED",
        "MEMBERS",
    ]

    # Downgrading revokes this database's grants but keeps the roles
    # (other databases may use them); upgrading again grants them again.
    conn.close()
    schema.downgrade(db_url, "0004")
    with psycopg.connect(db_url) as check:
        [(exists, can_insert)] = check.execute(
            "SELECT count(*) = 3,"
            " has_table_privilege('pgjobs_enqueuer', 'procrastinate_jobs', 'INSERT')"
            " FROM pg_roles"
            " WHERE rolname IN ('pgjobs_enqueuer', 'pgjobs_worker', 'pgjobs_monitor')"
        ).fetchall()
    assert exists and not can_insert
    schema.upgrade(db_url)
    assert not denied(logins["monitor"], "SELECT * FROM pgjobs.health")
