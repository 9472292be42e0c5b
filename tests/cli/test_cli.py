"""The ``pgjobs`` command line: db commands, worker errors, one-line failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pgjobs.db import schema
from tests.support import run_cli


def assert_one_line_error(result: object, code: int | None = None) -> str:
    stderr = result.stderr.strip()  # type: ignore[attr-defined]
    assert result.returncode != 0, result  # type: ignore[attr-defined]
    if code is not None:
        assert result.returncode == code, stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def test_help_lists_the_commands() -> None:
    result = run_cli("--help", db_url=None)
    assert result.returncode == 0
    for command in ("db", "worker", "demo"):
        assert command in result.stdout


def test_db_upgrade_current_downgrade(empty_db_url: str) -> None:
    result = run_cli("db", "current", "--json", db_url=empty_db_url)
    assert json.loads(result.stdout) == {
        "current": None,
        "head": schema.head(),
        "up_to_date": False,
    }
    result = run_cli("db", "upgrade", db_url=empty_db_url)
    assert result.returncode == 0, result.stderr
    assert f"is at revision {schema.head()}" in result.stdout
    assert json.loads(run_cli("db", "current", "--json", db_url=empty_db_url).stdout)[
        "up_to_date"
    ]
    result = run_cli("db", "downgrade", "base", db_url=empty_db_url)
    assert result.returncode == 0, result.stderr
    assert schema.current(empty_db_url) is None


def test_db_history_and_offline_sql() -> None:
    history = json.loads(run_cli("db", "history", "--json", db_url=None).stdout)
    assert [r["revision"] for r in history][-2:] == ["0002", "0001"]
    result = run_cli("db", "upgrade", "--sql", db_url=None)
    assert result.returncode == 0
    assert "CREATE TABLE procrastinate_jobs" in result.stdout


def test_unreachable_database_is_one_line_without_password() -> None:
    url = "postgresql://user:s3cret@127.0.0.1:1/nowhere"
    line = assert_one_line_error(run_cli("db", "upgrade", db_url=url), code=3)
    assert line.startswith("Error: cannot connect to the database")
    assert "s3cret" not in line


def test_invalid_url_setting_is_one_line() -> None:
    line = assert_one_line_error(run_cli("db", "current", db_url="mysql://x"), code=2)
    assert (
        line
        == "Error: invalid setting PGJOBS_DATABASE_URL: must be a postgresql:// URL"
        " or a key=value connection string (host=... dbname=...)"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--app", "no_such_module.app"], "cannot load app 'no_such_module.app'"),
        (["--app", "app"], "--app must be a dotted path"),
        (
            ["--app", "tests.support.apps.records.app", "-q", ""],
            "queue name must be 1 to 128 characters",
        ),
        (
            ["--app", "tests.support.apps.records.app", "-q", "x" * 200],
            "queue name must be 1 to 128 characters",
        ),
        ([], "no app given"),
    ],
)
def test_worker_user_mistakes(db_url: str, args: list[str], message: str) -> None:
    line = assert_one_line_error(run_cli("worker", *args, db_url=db_url))
    assert message in line


def test_worker_refuses_unmigrated_database(empty_db_url: str) -> None:
    line = assert_one_line_error(
        run_cli(
            "worker", "--app", "tests.support.apps.records.app", db_url=empty_db_url
        )
    )
    assert "run `pgjobs db upgrade`" in line


@pytest.mark.parametrize(
    "argument", [("--concurrency", "0"), ("--prefetch", "-1"), ("--prefetch", "many")]
)
def test_wrong_cli_argument_is_a_usage_error(argument: tuple[str, str]) -> None:
    result = run_cli("worker", *argument, db_url=None)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert argument[0] in result.stderr


def test_demo_runs_end_to_end(db_url: str, tmp_path: Path) -> None:
    result = run_cli("demo", db_url=db_url, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "jobs by state: succeeded=1003" in result.stdout
    assert "rolled back order" in result.stdout
    assert "refused at enqueue" in result.stdout
