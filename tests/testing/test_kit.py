"""The pytest kit (pgjobs.testing) as a user gets it: a test file of their own,
run by pytest in a subprocess with the plugin loaded from pgjobs' entry point."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pgjobs import App, Settings
from pgjobs.testing import assert_enqueued, assert_not_enqueued, enqueued_jobs, run_jobs
from tests.support import ROOT

SAMPLE = ROOT / "tests" / "kit_sample"


def run_sample(
    tmp_path: Path,
) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    for name in ("shop.py", "check_kit.py"):
        shutil.copy(SAMPLE / name, tmp_path / name)
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
        "filterwarnings =\n    error\n    ignore::UserWarning:platformdirs.*\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGJOBS_")}
    if os.environ.get("PGJOBS_TEST_DATABASE_URL"):
        env["PGJOBS_TEST_DATABASE_URL"] = os.environ["PGJOBS_TEST_DATABASE_URL"]
    env["PYTHONPATH"] = str(tmp_path)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "check_kit.py",
            "-q",
            "-p",
            "no:cacheprovider",
            "--junitxml",
            "report.xml",
            "-o",
            "timeout=60",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    outcomes = {}
    for case in ET.parse(tmp_path / "report.xml").getroot().iter("testcase"):
        failure = case.find("failure")
        error = case.find("error")
        if failure is not None:
            outcomes[case.get("name", "")] = "failed:" + (failure.get("message") or "")
        elif error is not None:
            outcomes[case.get("name", "")] = "error:" + (error.get("message") or "")
        else:
            outcomes[case.get("name", "")] = "passed"
    return result, outcomes


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_user_test_file_with_the_kit(tmp_path: Path) -> None:
    result, outcomes = run_sample(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr  # two must fail
    must_fail = {name for name in outcomes if name.endswith("_must_fail")}
    assert must_fail == {"test_wrong_argument_must_fail", "test_other_task_must_fail"}
    passed = {name for name, outcome in outcomes.items() if outcome == "passed"}
    assert passed == set(outcomes) - must_fail, result.stdout
    assert len(passed) == 7

    wrong = outcomes["test_wrong_argument_must_fail"]
    assert wrong.startswith(
        "failed:AssertionError: no waiting job of task "
        "'shop.send_confirmation' with {'email': 'a@example.com', 'order_id': 44}"
    )
    # The readable diff: every waiting job of the task, and how it differs.
    assert "waiting jobs of 'shop.send_confirmation' (2):" in result.stdout
    assert "order_id: expected 44, got 42" in result.stdout
    assert "order_id: expected 44, got 43" in result.stdout
    assert "email: expected 'a@example.com', got 'd@example.com'" in result.stdout

    other = outcomes["test_other_task_must_fail"]
    assert "no waiting job of task 'shop.sync_crm'" in other
    assert "waiting jobs of other tasks: shop.send_confirmation (1)" in result.stdout


def test_targets_settings_url_and_sqlalchemy_session(
    app: App, settings: Settings, db_url: str
) -> None:
    from sqlalchemy.orm import Session

    from pgjobs.db import schema

    @app.task(queue="q")
    def ping(n: int) -> None: ...

    engine = schema.engine_for(db_url)
    with Session(engine) as session:
        app.enqueue(session, ping, {"n": 1})
        assert assert_enqueued(session, ping, n=1).queue_name == "q"
        assert enqueued_jobs(settings) == []  # not committed yet
        session.commit()
    assert [job.args for job in enqueued_jobs(settings, ping)] == [{"n": 1}]
    assert_not_enqueued(db_url, ping, n=2)
    with pytest.raises(AssertionError, match="unexpected waiting job"):
        assert_not_enqueued(db_url, "tests.testing.test_kit.ping")
    [outcome] = run_jobs(app, settings)
    assert (outcome.status, outcome.attempts, outcome.error) == ("succeeded", 1, None)
    assert enqueued_jobs(db_url, status="succeeded")[0].id == outcome.id
