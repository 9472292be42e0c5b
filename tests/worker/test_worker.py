"""Real worker processes: procrastinate's CLI and ``pgjobs worker``."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from typing import Any

import psycopg
import pytest

from tests.support import ROOT, cli_env, wait_for
from tests.support.processes import Processes

pytestmark = pytest.mark.slow


def scalar(url: str, query: str, *params: Any) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
        return row[0] if row else None


def enqueue(
    url: str, *payloads: dict[str, Any], commit: bool = True
) -> psycopg.Connection[Any]:
    from tests.support.apps.records import app

    conn = psycopg.connect(url)
    app.enqueue_many(conn, "tests.record", payloads)
    if commit:
        conn.commit()
        conn.close()
    return conn


def test_procrastinate_worker_runs_pgjobs_app_and_wakes_on_commit(
    runs_db: str, processes: Processes
) -> None:
    # Polling every 5 minutes: only LISTEN/NOTIFY at commit can wake it in time.
    processes.start(
        "procrastinate",
        "--app=tests.support.apps.records.app",
        "worker",
        "--fetch-job-polling-interval=300",
        registered=True,
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
    runs_db: str, processes: Processes
) -> None:
    worker = processes.start(
        "pgjobs",
        "worker",
        "--app",
        "tests.support.apps.records.app",
        "--concurrency",
        "1",
        "--shutdown-grace",
        "20",
        registered=True,
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
    output = processes.finish(worker, timeout=30)
    assert worker.returncode == 0, output
    assert scalar(runs_db, "SELECT array_agg(key) FROM test_runs") == ["slow"]
    statuses = scalar(
        runs_db, "SELECT array_agg(status::text ORDER BY id) FROM procrastinate_jobs"
    )
    assert statuses == ["succeeded", "todo", "todo"]


def test_sigterm_puts_prefetched_jobs_back_unattempted(
    runs_db: str, processes: Processes
) -> None:
    enqueue(
        runs_db, {"key": "slow", "sleep": 2.0}, {"key": "held-1"}, {"key": "held-2"}
    )
    worker = processes.start(
        "pgjobs",
        "worker",
        "--app",
        "tests.support.apps.records.app",
        "--concurrency",
        "1",
        "--prefetch",
        "2",
        "--shutdown-grace",
        "20",
        registered=True,
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
    output = processes.finish(worker, timeout=30)
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
            "tests.support.apps.records.app",
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
    from pgjobs import ConfigError
    from pgjobs.worker import event_loop

    assert event_loop.name("auto") == "uvloop"  # installed by the dev extras
    assert event_loop.name("asyncio") == "asyncio"
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if not installed
    assert event_loop.name("auto") == "asyncio"
    with pytest.raises(ConfigError, match=r"pip install 'pgjobs\[uvloop\]'"):
        event_loop.name("uvloop")


def test_unknown_event_loop_setting_is_one_clear_line(runs_db: str) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pgjobs",
            "worker",
            "--app",
            "tests.support.apps.records.app",
        ],
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


def test_the_collector_is_frozen_only_when_the_worker_owns_the_process(
    app: Any,
) -> None:
    """``app.run_worker`` (``pgjobs worker``, the worker's own process)
    freezes what is loaded; a worker inside an application leaves its
    collector alone."""
    import asyncio
    import gc

    gc.unfreeze()
    try:

        async def in_application() -> None:
            async with app.open_async():
                await app.run_worker_async(wait=False, install_signal_handlers=False)

        asyncio.run(in_application())
        assert gc.get_freeze_count() == 0
        app.run_worker(wait=False, install_signal_handlers=False)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


FINISHED_ROWS = (
    "SELECT array_agg(ARRAY[id::text, status::text, xmin::text, ctid::text]"
    " ORDER BY id) FROM procrastinate_jobs"
    " WHERE status IN ('succeeded', 'failed', 'cancelled', 'aborted')"
)


@pytest.mark.parametrize("leaving", ["stop", "pruned"])
@pytest.mark.parametrize(
    "command",
    [
        ("pgjobs", "worker", "--app", "tests.support.apps.records.app"),
        ("procrastinate", "--app=tests.support.apps.records.app", "worker"),
    ],
    ids=["pgjobs", "procrastinate"],
)
def test_a_worker_leaving_rewrites_no_finished_job(
    runs_db: str,
    processes: Processes,
    command: tuple[str, ...],
    leaving: str,
) -> None:
    # The foreign key's ON DELETE SET NULL used to clear worker_id on every
    # kept job the worker ever ran: a finished job now has none to clear.
    enqueue(runs_db, *({"key": f"k{i}"} for i in range(20)))
    with psycopg.connect(runs_db) as conn:  # a payload that fails for good
        conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, args)"
            " VALUES ('default', 'tests.record', %s::jsonb)",
            ['{"key": "bad", "sleep": "x"}'],
        )
    worker = processes.start(*command, registered=True)
    wait_for(
        lambda: (
            scalar(
                runs_db,
                "SELECT count(*) FROM procrastinate_jobs"
                " WHERE status IN ('succeeded', 'failed')",
            )
            == 21
        ),
        what="the jobs to finish",
    )
    statuses = scalar(
        runs_db,
        "SELECT array_agg(DISTINCT status::text ORDER BY status::text)"
        " FROM procrastinate_jobs",
    )
    assert statuses == ["failed", "succeeded"]
    assert scalar(runs_db, "SELECT count(*) FROM procrastinate_workers") == 1
    assert (
        scalar(
            runs_db,
            "SELECT count(*) FROM procrastinate_jobs WHERE worker_id IS NOT NULL",
        )
        == 0
    )
    before = scalar(runs_db, FINISHED_ROWS)
    if leaving == "stop":  # the worker deletes its own row
        worker.send_signal(signal.SIGTERM)
        output = processes.finish(worker, timeout=30)
        assert worker.returncode == 0, output
    else:  # killed: another worker prunes its row once its heartbeat is old
        worker.kill()
        processes.finish(worker, timeout=30)
        assert scalar(runs_db, "SELECT count(*) FROM procrastinate_workers") == 1
        pruned = scalar(
            runs_db, "SELECT count(*) FROM procrastinate_prune_stalled_workers_v1(0)"
        )
        assert pruned == 1
    assert scalar(runs_db, "SELECT count(*) FROM procrastinate_workers") == 0
    # Same row versions: not one finished row was updated.
    assert scalar(runs_db, FINISHED_ROWS) == before
