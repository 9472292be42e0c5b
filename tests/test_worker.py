"""Real worker processes: procrastinate's CLI and ``pgjobs worker``."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from tests.apps import RUNS_TABLE
from tests.conftest import ROOT, cli_env
from tests.support import wait_for

pytestmark = pytest.mark.slow


def scalar(url: str, query: str, *params: Any) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
        return row[0] if row else None


def enqueue(
    url: str, *payloads: dict[str, Any], commit: bool = True
) -> psycopg.Connection[Any]:
    from tests.apps import app

    conn = psycopg.connect(url)
    app.enqueue_many(conn, "tests.record", payloads)
    if commit:
        conn.commit()
        conn.close()
    return conn


@pytest.fixture
def runs_db(db_url: str) -> str:
    with psycopg.connect(db_url) as conn:
        conn.execute(RUNS_TABLE)
    return db_url


@pytest.fixture
def start_worker(runs_db: str) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []

    def start(*command: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", *command],
            env=cli_env(runs_db),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        processes.append(process)
        wait_for(
            lambda: (
                scalar(runs_db, "SELECT count(*) FROM procrastinate_workers")
                >= len(processes)
            ),
            what="worker registration",
        )
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.communicate()


def test_procrastinate_worker_runs_pgjobs_app_and_wakes_on_commit(
    runs_db: str, start_worker: Callable[..., subprocess.Popen[str]]
) -> None:
    # Polling every 5 minutes: only LISTEN/NOTIFY at commit can wake it in time.
    start_worker(
        "procrastinate",
        "--app=tests.apps.app",
        "worker",
        "--fetch-job-polling-interval=300",
    )
    conn = enqueue(runs_db, {"key": "woken"}, commit=False)
    time.sleep(1.0)
    assert (
        scalar(runs_db, "SELECT count(*) FROM test_runs") == 0
    )  # uncommitted: invisible
    conn.commit()
    committed = time.time()
    conn.close()
    started = wait_for(
        lambda: scalar(
            runs_db,
            "SELECT extract(epoch FROM started_at) FROM test_runs WHERE key = 'woken'",
        ),
        timeout=30,
        what="the job to run",
    )
    assert float(started) - committed < 10  # far below the 300 s polling interval


def test_sigterm_lets_the_running_job_finish_and_claims_nothing_new(
    runs_db: str, start_worker: Callable[..., subprocess.Popen[str]]
) -> None:
    worker = start_worker(
        "pgjobs",
        "worker",
        "--app",
        "tests.apps.app",
        "--concurrency",
        "1",
        "--shutdown-grace",
        "20",
    )
    enqueue(runs_db, {"key": "slow", "sleep": 2.0})
    wait_for(
        lambda: scalar(
            runs_db, "SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing'"
        ),
        what="the slow job to start",
    )
    enqueue(runs_db, {"key": "queued-1"}, {"key": "queued-2"})
    worker.send_signal(signal.SIGTERM)
    output, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0, output
    assert scalar(runs_db, "SELECT array_agg(key) FROM test_runs") == ["slow"]
    statuses = scalar(
        runs_db, "SELECT array_agg(status::text ORDER BY id) FROM procrastinate_jobs"
    )
    assert statuses == ["succeeded", "todo", "todo"]


def test_sigterm_puts_prefetched_jobs_back_unattempted(
    runs_db: str, start_worker: Callable[..., subprocess.Popen[str]]
) -> None:
    enqueue(
        runs_db, {"key": "slow", "sleep": 2.0}, {"key": "held-1"}, {"key": "held-2"}
    )
    worker = start_worker(
        "pgjobs",
        "worker",
        "--app",
        "tests.apps.app",
        "--concurrency",
        "1",
        "--prefetch",
        "2",
        "--shutdown-grace",
        "20",
    )
    # One claim: the slow job runs, the other two wait in the worker.
    wait_for(
        lambda: (
            scalar(
                runs_db,
                "SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing'",
            )
            == 3
        ),
        what="three jobs claimed",
    )
    worker.send_signal(signal.SIGTERM)
    output, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0, output
    assert "put back 2 prefetched job(s)" in output
    assert scalar(runs_db, "SELECT array_agg(key) FROM test_runs") == ["slow"]
    rows = scalar(
        runs_db,
        "SELECT array_agg(ARRAY[status::text, attempts::text, "
        "coalesce(worker_id::text, '-')] ORDER BY id) FROM procrastinate_jobs",
    )
    assert rows == [["succeeded", "1", "-"], ["todo", "0", "-"], ["todo", "0", "-"]]


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_pgjobs_worker_one_shot_drains_the_queue(runs_db: str, loop: str) -> None:
    enqueue(runs_db, *({"key": f"k{i}"} for i in range(50)))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pgjobs",
            "worker",
            "--app",
            "tests.apps.app",
            "--one-shot",
            "-c",
            "5",
            "--prefetch",
            "5" if loop == "uvloop" else "0",
        ],
        env=cli_env(runs_db, PGJOBS_EVENT_LOOP=loop),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert f"Worker event loop: {loop}" in result.stderr
    assert scalar(runs_db, "SELECT count(DISTINCT key) FROM test_runs") == 50
    assert scalar(runs_db, "SELECT count(*) FROM test_runs") == 50


def test_event_loop_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    from pgjobs import ConfigError, event_loop

    assert event_loop.name("auto") == "uvloop"  # installed by the dev extras
    assert event_loop.name("asyncio") == "asyncio"
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if not installed
    assert event_loop.name("auto") == "asyncio"
    with pytest.raises(ConfigError, match=r"pip install 'pgjobs\[uvloop\]'"):
        event_loop.name("uvloop")


def test_unknown_event_loop_setting_is_one_clear_line(runs_db: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pgjobs", "worker", "--app", "tests.apps.app"],
        env=cli_env(runs_db, PGJOBS_EVENT_LOOP="trio"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "PGJOBS_EVENT_LOOP" in result.stderr, (
        result.stderr
    )
