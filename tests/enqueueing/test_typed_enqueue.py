"""Typed enqueue: mypy checks task.enqueue()/defer() against the task function."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs import App, InvalidJobOptions, InvalidPayload
from pgjobs.testing import assert_enqueued, enqueued_jobs
from tests.support import ROOT

SAMPLE = ROOT / "tests" / "typing_sample"


def mypy(tmp_path: Path, sample: str) -> subprocess.CompletedProcess[str]:
    for name in ("jobs.py", sample):
        shutil.copy(SAMPLE / name, tmp_path / name)
    (tmp_path / "mypy.ini").write_text("[mypy]\nstrict = True\n")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            "mypy.ini",
            "--cache-dir",
            str(tmp_path / "cache"),
            "jobs.py",
            sample,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_mypy_flags_wrong_arguments_and_passes_right_ones(tmp_path: Path) -> None:
    good = mypy(tmp_path, "good.py")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "Success: no issues found in 2 source files" in good.stdout

    bad = mypy(tmp_path, "bad.py")
    assert bad.returncode == 1, bad.stdout
    expected = {
        number
        for number, line in enumerate((SAMPLE / "bad.py").read_text().splitlines(), 1)
        if line.endswith("# E")
    }
    flagged = {
        int(m[1]) for m in re.finditer(r"^bad\.py:(\d+): error:", bad.stdout, re.M)
    }
    assert flagged == expected, bad.stdout
    assert (
        'Argument "order_id" to "enqueue" of "Task" has incompatible type "str"; expected "int"'
        in bad.stdout
    )
    assert 'Missing positional argument "email" in call to "enqueue"' in bad.stdout
    assert 'Unexpected keyword argument "urgent"' in bad.stdout


async def test_task_enqueue_runs_in_the_callers_transaction(
    app: App, conn: psycopg.Connection[Any], aconn: psycopg.AsyncConnection[Any]
) -> None:
    @app.task(queue="emails")
    def send(order_id: int) -> None: ...

    job_id = send.enqueue(conn, order_id=1)
    assert assert_enqueued(conn, send, order_id=1).id == job_id
    conn.rollback()
    assert enqueued_jobs(conn) == []
    async with aconn.transaction():
        await send.enqueue_async(aconn, order_id=2)
    assert [job.args for job in enqueued_jobs(conn)] == [{"order_id": 2}]
    with pytest.raises(InvalidJobOptions, match="pass arguments by keyword"):
        send.enqueue(conn, 3)  # type: ignore[call-arg]
    with pytest.raises(InvalidPayload):
        send.enqueue(conn, order_id="three")  # type: ignore[arg-type]
