"""What a new user meets in the first hour: each mistake gets one line that
says what to do (issue 16, items 9-15)."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.db import embedded
from pgjobs.errors import InvalidSchedule
from pgjobs.scheduling import cron
from tests.support import ROOT, cli_env, rows, run_cli


def one_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == code, result.stderr
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


# -- 10: cron messages name the field and the value (9: one that never fires)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("61 * * * *", "minute field '61' is not valid (values 0-59"),
        ("0 25 * * *", "hour field '25' is not valid (values 0-23"),
        ("*/0 * * * *", "minute field '*/0' is not valid"),
        ("0 0 0 * *", "day-of-month field '0' is not valid (values 1-31"),
        ("0 0 * 13 *", "month field '13' is not valid (values 1-12 or jan-dec"),
        ("0 0 * * 8", "day-of-week field '8' is not valid (values 0-7 or sun-sat"),
        ("* * * * * 70", "second field '70' is not valid (values 0-59"),
        ("abc", "expected 5 fields"),
        ("0 0 31 2 *", "never fires (no such date)"),
    ],
)
def test_cron_errors_name_the_field(expression: str, message: str) -> None:
    with pytest.raises(InvalidSchedule) as error:
        cron.check_cron(expression)
    assert message in str(error.value)
    assert f"{expression!r}" in str(error.value)


def test_cron_that_never_fires_is_one_line(db_url: str) -> None:
    result = run_cli(
        "schedules", "add", "feb31", "sched.record", "--cron", "0 0 31 2 *",
        "--args", '{"key": "k"}', "--app", "tests.support.apps.schedules.app",
        db_url=db_url,
    )  # fmt: skip
    assert one_line(result, 1) == (
        "Error: cron expression '0 0 31 2 *' never fires (no such date)"
    )
    assert rows(db_url, "SELECT count(*) FROM pgjobs.schedules") == [(0,)]


def test_monitor_role_is_told_what_it_may_do(db_url: str) -> None:
    url = (
        db_url + ("&" if "?" in db_url else "?") + "options=-c%20role%3Dpgjobs_monitor"
    )
    for command in (("jobs", "list"), ("jobs", "show", "1"), ("dlq", "list")):
        line = one_line(run_cli(*command, db_url=url), 1)
        assert line.startswith(
            (
                "Error: permission denied for table ",
                "Error: permission denied for view ",
            )
        )
        assert "pgjobs_monitor reads only the monitoring views: pgjobs stats" in line
    assert run_cli("stats", db_url=url).returncode == 0


# -- 11: --app from the project folder, and a module given instead of an App


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'myapp'\n")
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "__init__.py").write_text("")
    (tmp_path / "myapp" / "jobs.py").write_text(
        "from pgjobs import App\napp = App()\n\n"
        "@app.task(name='hello')\ndef hello() -> None: ...\n"
    )
    return tmp_path


def pgjobs_script(*args: str, cwd: Path, db_url: str | None, **env: str) -> Any:
    """The installed ``pgjobs`` script (not ``python -m``, which adds the
    current folder to the import path by itself)."""
    environment = cli_env(db_url, **env)
    environment.pop("PYTHONPATH")
    return subprocess.run(
        [str(Path(sys.executable).with_name("pgjobs")), *args],
        env=environment,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_worker_app_from_the_project_folder(project: Path, db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name) "
            "VALUES ('default', 'hello')"
        )
    result = pgjobs_script(
        "worker", "--app", "myapp.jobs.app", "--one-shot", cwd=project, db_url=db_url
    )
    assert result.returncode == 0, result.stderr
    assert rows(db_url, "SELECT status::text FROM procrastinate_jobs") == [
        ("succeeded",)
    ]
    module = pgjobs_script("worker", "--app", "myapp.jobs", cwd=project, db_url=db_url)
    assert one_line(module, 2) == (
        "Error: 'myapp.jobs' is a module, not an App: pass --app myapp.jobs.app"
    )
    elsewhere = pgjobs_script(
        "worker", "--app", "myapp.jobs.app", cwd=project.parent, db_url=db_url
    )
    assert "no module named 'myapp' importable from" in one_line(elsewhere, 2)
    assert "run from the folder that holds 'myapp'" in elsewhere.stderr


# -- 12: usage errors are one line, exit 2, as the README says


def test_usage_errors_are_one_line_exit_2(db_url: str) -> None:
    for args, message in (
        (("jobs", "list", "--older-than", "5x"), "invalid age '5x'"),
        (("jobs", "list", "--status", "nope"), "Invalid value for '--status'"),
        (("jobs", "lst"), "No such command 'lst'"),
        (("jobs", "show"), "Missing argument 'JOB_ID'"),
    ):
        line = one_line(run_cli(*args, db_url=db_url), 2)
        assert line.startswith(f"Error: {message}") and line.endswith("--help)"), line
    readme = (ROOT / "README.md").read_text()
    assert "2 usage (a bad option or value) or bad settings" in readme


# -- 13: arguments as JSON


def test_show_prints_arguments_as_json(db_url: str) -> None:
    args = {"to": "a@example.com", "ok": True, "n": None}
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, args) "
            "VALUES ('default', 'mail', %s)",
            [json.dumps(args)],
        )
        conn.execute("UPDATE procrastinate_jobs SET status = 'failed'")
    job = run_cli("jobs", "show", "1", db_url=db_url)
    letter = run_cli("dlq", "show", "1", db_url=db_url)
    for result in (job, letter):
        assert result.returncode == 0, result.stderr
        [line] = [
            line for line in result.stdout.splitlines() if line.startswith("args:")
        ]
        assert json.loads(line.removeprefix("args:")) == args, line  # not a repr


# -- 14: one embedded data folder per project, named


def test_embedded_folder_is_anchored(
    project: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tmp_path = tmp_path_factory.mktemp("no-project")
    sub = project / "myapp"
    assert embedded.default_data_dir(sub) == (
        project.resolve() / ".pgjobs" / "postgres",
        "project root: pyproject.toml",
    )
    outside = tmp_path / "nowhere"
    outside.mkdir()
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert embedded.default_data_dir(outside) == (
        tmp_path / "data" / "pgjobs" / "postgres",
        "no project folder: user default",
    )


@pytest.mark.slow
def test_commands_from_two_folders_share_one_embedded_database(project: Path) -> None:
    lines = []
    for folder in (project, project / "myapp"):
        result = pgjobs_script("db", "upgrade", cwd=folder, db_url=None)
        assert result.returncode == 0, result.stderr
        lines.append(result.stdout.strip().splitlines()[-1])
    folder = project.resolve() / ".pgjobs" / "postgres"
    expected = (
        f"embedded PostgreSQL in {folder} (project root: pyproject.toml) is at revision"
    )
    assert all(line.startswith(expected) for line in lines), lines


# -- 15: docs/schedules.md's examples run as written


def test_docs_schedule_mistakes_are_what_the_docs_say(db_url: str) -> None:
    text = (ROOT / "docs" / "schedules.md").read_text()
    block = text.split("Mistakes print one line and exit non-zero, e.g.", 1)[1]
    block = block.split("```", 2)[1]
    lines = [line for line in block.splitlines() if line.strip()]
    pairs = list(zip(lines[0::2], lines[1::2], strict=True))
    assert len(pairs) >= 3
    for command, error in pairs:
        args = shlex.split(command.removeprefix("$ pgjobs "))
        args[args.index("myapp.jobs.app")] = "tests.support.apps.docs.app"
        assert one_line(run_cli(*args, db_url=db_url), 1) == error
    # The invalid-cron example is a valid schedule once its cron is fixed.
    command = next(c for c, _ in pairs if "'61 * * * *'" in c)
    args = shlex.split(command.removeprefix("$ pgjobs ").replace("61 *", "0 *"))
    args[args.index("myapp.jobs.app")] = "tests.support.apps.docs.app"
    fixed = run_cli(*args, db_url=db_url)
    assert fixed.returncode == 0, fixed.stderr
