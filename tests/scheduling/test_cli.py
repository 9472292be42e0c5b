"""``pgjobs schedules``: the real command line in a subprocess."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from tests.support import run_cli

APP = ("--app", "tests.support.apps.schedules.app")


def schedule_count(db: psycopg.Connection[Any]) -> int:
    row = db.execute("SELECT count(*) FROM pgjobs.schedules").fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("s", "no.such.task", "--cron", "0 0 * * *"), "unknown task 'no.such.task'"),
        (("s", "sched.record", "--cron", "61 * * * *"), "invalid cron expression"),
        (("s", "sched.record", "--cron", "* * *"), "invalid cron expression"),
        (("s", "sched.record"), "exactly one of --cron and --every"),
        (("s", "sched.record", "--every", "1.5s"), "invalid --every"),
        (("s", "sched.record", "--cron", "* * * * *"), "missing argument(s) key"),
        (
            ("s", "sched.record", "--cron", "* * * * *", "--args", "[1]"),
            "--args must be a JSON object",
        ),
    ],
)
def test_add_errors_are_one_line_and_write_nothing(
    db_url: str, db: psycopg.Connection[Any], args: tuple[str, ...], message: str
) -> None:
    result = run_cli("schedules", "add", *args, *APP, db_url=db_url)
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert schedule_count(db) == 0


def test_add_needs_an_app(db_url: str, db: psycopg.Connection[Any]) -> None:
    result = run_cli(
        "schedules", "add", "s", "sched.record", "--cron", "0 0 * * *", db_url=db_url
    )
    assert result.returncode == 2
    assert "no app given" in result.stderr
    assert schedule_count(db) == 0


def test_manage_a_schedule(db_url: str, db: psycopg.Connection[Any]) -> None:
    added = run_cli(
        "schedules", "add", "nightly", "sched.record", "--cron", "0 0 * * *",
        "--args", '{"key": "n"}', "--missed-runs", "once", "--json", *APP,
        db_url=db_url,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["missed_runs"] == "once"
    every = run_cli(
        "schedules", "add", "often", "sched.record", "--every", "5m",
        "--args", '{"key": "o"}', *APP, db_url=db_url,
    )  # fmt: skip
    assert every.stdout.strip() == "schedule often added (every 300 s)"
    duplicate = run_cli(
        "schedules", "add", "often", "sched.record", "--every", "5m",
        "--args", '{"key": "o"}', *APP, db_url=db_url,
    )  # fmt: skip
    assert duplicate.returncode == 1
    assert "already exists" in duplicate.stderr

    listed = json.loads(run_cli("schedules", "list", "--json", db_url=db_url).stdout)
    assert [(s["name"], s["cron"], s["interval_seconds"]) for s in listed] == [
        ("nightly", "0 0 * * *", None),
        ("often", None, 300),
    ]
    table = run_cli("schedules", "list", db_url=db_url).stdout
    assert table.splitlines()[0].split()[:3] == ["NAME", "TASK", "SCHEDULE"]

    changed = run_cli(
        "schedules", "change", "often", "--cron", "*/30 * * * *", *APP, db_url=db_url
    )
    assert changed.stdout.strip() == "schedule often changed (*/30 * * * *)"
    bad_change = run_cli(
        "schedules", "change", "often", "--cron", "nope", *APP, db_url=db_url
    )
    assert bad_change.returncode == 1 and "invalid cron" in bad_change.stderr

    assert run_cli("schedules", "pause", "nightly", db_url=db_url).returncode == 0
    paused = json.loads(run_cli("schedules", "list", "--json", db_url=db_url).stdout)
    assert paused[0]["paused"] is True
    assert run_cli("schedules", "resume", "nightly", db_url=db_url).returncode == 0

    ran = run_cli("schedules", "run", "nightly", "--json", db_url=db_url)
    job_id = json.loads(ran.stdout)["job_id"]
    row = db.execute(
        "SELECT task_name, args FROM procrastinate_jobs WHERE id = %s", (job_id,)
    ).fetchone()
    assert row == ("sched.record", {"key": "n"})
    history = json.loads(
        run_cli("schedules", "runs", "nightly", "--json", db_url=db_url).stdout
    )
    assert [(r["trigger"], r["job_id"]) for r in history] == [("manual", job_id)]

    removed = run_cli("schedules", "remove", "nightly", db_url=db_url)
    assert removed.stdout.strip() == "schedule nightly removed"
    missing = run_cli("schedules", "remove", "nightly", db_url=db_url)
    assert missing.returncode == 1
    assert missing.stderr.strip() == "Error: no schedule named 'nightly'"


def test_health_exits_1_when_overdue(db_url: str, db: psycopg.Connection[Any]) -> None:
    run_cli(
        "schedules", "add", "minutely", "sched.record", "--cron", "* * * * *",
        "--args", '{"key": "m"}', *APP, db_url=db_url,
    )  # fmt: skip
    healthy = run_cli("schedules", "health", db_url=db_url)
    assert healthy.returncode == 0, healthy.stderr
    assert "minutely" in healthy.stdout and "ok" in healthy.stdout

    db.execute("UPDATE pgjobs.schedules SET active_since = now() - interval '5 min'")
    overdue = run_cli("schedules", "health", "--json", db_url=db_url)
    assert overdue.returncode == 1
    [row] = json.loads(overdue.stdout)
    assert (row["name"], row["overdue"], row["expected_interval"]) == (
        "minutely",
        True,
        "0:01:00",
    )
    table = run_cli("schedules", "health", "--overdue", db_url=db_url)
    assert table.returncode == 1 and "OVERDUE" in table.stdout
