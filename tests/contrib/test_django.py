"""pgjobs.contrib.django on Django 5.2 (the main venv), through the example
project's real manage.py commands (tests/contrib/test_django6.py: Django 6)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pgjobs.db import schema
from pgjobs.testing.server import PgServer
from tests.support import ROOT, cli_env, rows, wait_for
from tests.support.django import PROJECT, manage

pytestmark = pytest.mark.slow


def migrate(db_url: str) -> None:
    result = manage("migrate", "--noinput", db_url=db_url)
    assert result.returncode == 0, result.stderr


def test_migrate_brings_pgjobs_schema_up(empty_db_url: str) -> None:
    result = manage("migrate", "--noinput", db_url=empty_db_url)
    assert result.returncode == 0, result.stderr
    assert f"pgjobs schema: empty -> {schema.head()}" in result.stdout
    assert schema.current(empty_db_url) == schema.head()
    # Django's own tables beside pgjobs'; the version tables stay apart.
    tables = {r[0] for r in rows(empty_db_url, "SELECT tablename FROM pg_tables")}
    assert {"orders_order", "django_migrations", "pgjobs_alembic_version"} <= tables
    assert "alembic_version" not in tables
    again = manage("migrate", "--noinput", db_url=empty_db_url)
    assert again.returncode == 0 and "pgjobs schema" not in again.stdout


def test_atomic_commit_and_rollback(empty_db_url: str) -> None:
    db_url = empty_db_url
    migrate(db_url)
    placed = manage("place_order", "a@example.com", db_url=db_url)
    assert placed.returncode == 0, placed.stderr
    failed = manage("place_order", "b@example.com", "--fail", db_url=db_url)
    assert failed.returncode == 1
    assert "order not placed: payment declined" in failed.stderr
    # The rolled-back order left neither its row nor its jobs (app.enqueue
    # on django.db.connection and task.defer() both joined the atomic block).
    assert rows(db_url, "SELECT email FROM orders_order") == [("a@example.com",)]
    assert sorted(
        rows(db_url, "SELECT task_name, args->>'order_id' FROM procrastinate_jobs")
    ) == [
        ("orders.tasks.notify_warehouse", "1"),
        ("orders.tasks.send_confirmation", "1"),
    ]

    # The pgjobs CLI inside manage.py: Django's database, the project's App.
    listed = manage("pgjobs", "jobs", "list", "--json", db_url=db_url)
    assert listed.returncode == 0, listed.stderr
    assert {job["task_name"] for job in json.loads(listed.stdout)} == {
        "orders.tasks.notify_warehouse",
        "orders.tasks.send_confirmation",
    }
    worker = manage("pgjobs", "worker", "--one-shot", db_url=db_url)
    assert worker.returncode == 0, worker.stderr
    assert rows(db_url, "SELECT confirmed, shipped FROM orders_order") == [(True, True)]
    assert rows(db_url, "SELECT DISTINCT status::text FROM procrastinate_jobs") == [
        ("succeeded",)
    ]


def test_commit_wakes_a_listening_worker(empty_db_url: str) -> None:
    db_url = empty_db_url
    migrate(db_url)
    env = cli_env(None, DATABASE_URL=db_url, DJANGO_SETTINGS_MODULE="config.settings")
    env["PYTHONPATH"] = f"{PROJECT}:{ROOT}"
    # A worker that polls only every 10 minutes: within the test, only the
    # NOTIFY sent at the order's commit can wake it.
    worker = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "from pgjobs.contrib.django import app; "
            "app.run_worker(fetch_job_polling_interval=600)",
        ],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(
            lambda: rows(
                db_url,
                "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
                "AND query LIKE 'LISTEN %'",
            ),
            what="the worker to listen",
        )
        assert manage("place_order", "c@example.com", db_url=db_url).returncode == 0
        wait_for(
            lambda: rows(
                db_url, "SELECT 1 FROM orders_order WHERE confirmed AND shipped"
            ),
            timeout=20,
            what="the listening worker to run the committed jobs",
        )
    finally:
        worker.terminate()
        _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr


def test_bad_cli_input_is_one_line(empty_db_url: str) -> None:
    migrate(empty_db_url)
    result = manage("pgjobs", "jobs", "show", "999", db_url=empty_db_url)
    assert result.returncode != 0
    assert result.stderr.strip() == "Error: no job with id 999"


def test_psycopg2_backend_is_refused_with_what_to_do(empty_db_url: str) -> None:
    migrate(empty_db_url)
    # Django picks psycopg 3 whenever it can import it (pgjobs depends on it):
    # a psycopg2 connection under Django's wrapper stands for a psycopg2 backend.
    code = (
        "import os, psycopg2\n"
        "from django.db import connection\n"
        "from orders.tasks import send_confirmation\n"
        "from pgjobs.contrib.django import app\n"
        "connection.connection = psycopg2.connect(os.environ['DATABASE_URL'])\n"
        "try:\n"
        "    app.enqueue(connection, send_confirmation, {'order_id': 1})\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    result = manage("shell", "-c", code, db_url=empty_db_url)
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith(
        "InvalidJobOptions Django's database connection is a psycopg2"
    ), line
    assert "pgjobs enqueues on psycopg 3 connections only" in line
    assert "uninstall psycopg2" in line
    assert rows(empty_db_url, "SELECT count(*) FROM procrastinate_jobs") == [(0,)]


def test_django_test_runner_gets_pgjobs_schema_in_its_test_database(
    empty_db_url: str,
) -> None:
    migrate(empty_db_url)
    result = manage("test", "orders", "--noinput", "-v", "2", db_url=empty_db_url)
    assert result.returncode == 0, result.stderr
    assert "Ran 3 tests" in result.stderr and "OK" in result.stderr
    # migrate ran on the test database (test_<name>), not on the real one.
    assert "pgjobs schema: empty ->" in result.stdout


def test_pgjobs_database_url_overrides_databases(server: PgServer) -> None:
    django_name, django_db = server.new_database(migrated=False)
    jobs_name, jobs_db = server.new_database(migrated=False)
    try:
        result = manage(
            "migrate", "--noinput", db_url=django_db, PGJOBS_DATABASE_URL=jobs_db
        )
        assert result.returncode == 0, result.stderr
        assert schema.current(jobs_db) == schema.head()
        assert schema.current(django_db) is None  # Django's tables only
        assert rows(django_db, "SELECT to_regclass('procrastinate_jobs')") == [(None,)]
    finally:
        server.drop_database(django_name)
        server.drop_database(jobs_name)
