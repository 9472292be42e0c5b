"""A worker's 'doing' rows against what it runs (pgjobs.worker.reconcile): after a
reconnect, lost outcomes are written again and jobs it does not run go back
to the queue; health reports such jobs while they last."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from faults import scenarios
from tests.support import run_cli

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

FAST = {
    "PGJOBS_HEARTBEAT_INTERVAL": "1",
    "PGJOBS_STALLED_AFTER": "30",
    "PGJOBS_LOG_LEVEL": "INFO",
}


def _scalar(url: str, query: str, *params: Any) -> Any:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
    return row[0] if row else None


def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _status(url: str, job_id: int) -> str:
    return str(
        _scalar(
            url, "SELECT status::text FROM procrastinate_jobs WHERE id = %s", job_id
        )
    )


def _the_worker(url: str) -> int:
    """The id of the one worker running (a finished job keeps no worker_id)."""
    with psycopg.connect(url, autocommit=True) as conn:
        [(worker_id,)] = conn.execute("SELECT id FROM procrastinate_workers").fetchall()
    return int(worker_id)


def _runs(url: str, job_id: int) -> int:
    return int(
        _scalar(url, "SELECT count(*) FROM fault_runs WHERE job_id = %s", job_id)
    )


def _cut_connections(url: str) -> None:
    _scalar(
        url,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        "   AND backend_type = 'client backend'",
    )


def test_lost_outcome_is_written_again_after_a_reconnect(db_url: str) -> None:
    scenarios.prepare(db_url)
    with scenarios.workers(db_url, 1, 2, **FAST) as group:
        [job_id] = scenarios.enqueue(db_url, 1)
        _until(lambda: _status(db_url, job_id) == "succeeded", 60, "the job")
        worker_id = _the_worker(db_url)
        # What a failover with asynchronous replication leaves: the outcome
        # fell in the lag window, the promoted standby has the job running.
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(
                "UPDATE procrastinate_jobs SET status = 'doing', worker_id = %s"
                " WHERE id = %s",
                [worker_id, job_id],
            )
        _cut_connections(db_url)
        _until(lambda: _status(db_url, job_id) == "succeeded", 20, "the rewrite")
        log = group.log_text()
    assert _runs(db_url, job_id) == 1  # written again, not run again
    assert "wrote again the outcome of 1 job(s)" in log, log
    assert group.error_lines() == []


def test_a_job_the_worker_does_not_run_goes_back_to_the_queue(db_url: str) -> None:
    scenarios.prepare(db_url)
    with scenarios.workers(db_url, 1, 2, **FAST) as group:
        [first] = scenarios.enqueue(db_url, 1)
        _until(lambda: _status(db_url, first) == "succeeded", 60, "the first job")
        worker_id = _the_worker(db_url)
        # A claim this worker never saw (the promoted standby has it, the
        # worker's reply was lost with the old primary).
        with psycopg.connect(db_url, autocommit=True) as conn:
            [(orphan,)] = conn.execute(
                "INSERT INTO procrastinate_jobs (queue_name, task_name, args, status,"
                " worker_id) VALUES ('default', 'faults.work', '{\"n\": 99}', 'doing',"
                " %s) RETURNING id",
                [worker_id],
            )
        _cut_connections(db_url)
        _until(lambda: _status(db_url, orphan) == "succeeded", 30, "the orphan to run")
        log = group.log_text()
    assert _runs(db_url, orphan) == 1
    assert "put back 1 job(s) marked running on this worker" in log, log
    assert group.error_lines() == []


def test_without_any_reconnect_too(db_url: str) -> None:
    scenarios.prepare(db_url)
    with scenarios.workers(db_url, 1, 2, **FAST):
        [first] = scenarios.enqueue(db_url, 1)
        _until(lambda: _status(db_url, first) == "succeeded", 60, "the first job")
        worker_id = _the_worker(db_url)
        with psycopg.connect(db_url, autocommit=True) as conn:
            [(orphan,)] = conn.execute(
                "INSERT INTO procrastinate_jobs (queue_name, task_name, args, status,"
                " worker_id) VALUES ('default', 'faults.work', '{\"n\": 98}', 'doing',"
                " %s) RETURNING id",
                [worker_id],
            )
        _until(lambda: _status(db_url, orphan) == "succeeded", 30, "the orphan to run")


def test_health_reports_jobs_a_live_worker_does_not_run(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        [(worker_id,)] = conn.execute(
            "INSERT INTO procrastinate_workers DEFAULT VALUES RETURNING id"
        )
        held, orphan = (
            conn.execute(
                "INSERT INTO procrastinate_jobs (queue_name, task_name, status,"
                " worker_id) VALUES ('q', 't.a', 'doing', %s) RETURNING id",
                [worker_id],
            ).fetchone()[0]  # type: ignore[index]
            for _ in range(2)
        )
    token = uuid.uuid4()

    def beat() -> Any:
        with psycopg.connect(db_url, autocommit=True) as conn:
            return conn.execute(
                "SELECT worker_id, unheld, orphans"
                "  FROM pgjobs.worker_heartbeat(%s, %s, %s::bigint[])",
                [worker_id, token, [held]],
            ).fetchone()

    assert beat() == (worker_id, [orphan], [])  # once: maybe a claim in flight
    healthy = run_cli("health", "--json", db_url=db_url)
    assert healthy.returncode == 0, healthy.stdout
    assert beat() == (worker_id, [orphan], [orphan])  # twice: an orphan
    done = run_cli("health", "--json", db_url=db_url)
    assert done.returncode == 1
    [problem] = json.loads(done.stdout)
    assert problem["check"] == "orphaned_job"
    assert problem["subject"] == f"job {orphan}"
    assert f"running on worker {worker_id}, which does not run it" in problem["detail"]
    # Put back (what the worker does with it): no row any more.
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SELECT pgjobs.release_jobs(%s, %s)", [worker_id, [orphan]])
    assert run_cli("health", db_url=db_url).returncode == 0


def test_another_process_on_the_same_worker_id_registers_anew(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        [(worker_id,)] = conn.execute(
            "INSERT INTO procrastinate_workers DEFAULT VALUES RETURNING id"
        )
        [(job_id,)] = conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, status, worker_id)"
            " VALUES ('q', 't.a', 'doing', %s) RETURNING id",
            [worker_id],
        )
        beat = (
            "SELECT worker_id, unheld, orphans"
            "  FROM pgjobs.worker_heartbeat(%s, %s, %s::bigint[])"
        )
        first, second = uuid.uuid4(), uuid.uuid4()
        assert conn.execute(beat, [worker_id, first, []]).fetchone() == (
            worker_id,
            [job_id],
            [],
        )
        # The same id, another process holding the job: it moves to a new id.
        [(new_id, unheld, orphans)] = conn.execute(beat, [worker_id, second, [job_id]])
        assert new_id != worker_id and (unheld, orphans) == ([], [])
        assert conn.execute(
            "SELECT worker_id FROM procrastinate_jobs WHERE id = %s", [job_id]
        ).fetchone() == (new_id,)
