"""Hot standbys and multi-host URLs, on a primary and a streaming standby the
tests start themselves (faults/replication.py)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from faults.replication import Replication
from pgjobs.db import schema
from tests.support import run_cli

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SCHEDULE_ADD = ["schedules", "add", "tick", "faults.work", "--every", "60s"]


@pytest.fixture(scope="module")
def replication() -> Iterator[Replication]:
    pair = Replication()
    pair.create_database("app")
    schema.upgrade(pair.primary_url("app"))
    pair.wait_replayed()
    yield pair
    pair.close()


def _one_job_running(url: str) -> tuple[int, int]:
    """A registered worker running one job, as a live worker leaves them."""
    with psycopg.connect(url, autocommit=True) as conn:
        [(worker_id,)] = conn.execute(
            "INSERT INTO procrastinate_workers DEFAULT VALUES RETURNING id"
        )
        [(job_id,)] = conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, status, worker_id)"
            " VALUES ('default', 't.long', 'doing', %s) RETURNING id",
            [worker_id],
        )
    return worker_id, job_id


def _beat(url: str, worker_id: int, stop: threading.Event) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        while not stop.is_set():
            conn.execute(
                "UPDATE procrastinate_workers SET last_heartbeat = now() WHERE id = %s",
                [worker_id],
            )
            time.sleep(0.2)


def test_health_on_a_lagging_standby_reports_the_lag_not_stalled_jobs(
    replication: Replication,
) -> None:
    primary, standby = replication.primary_url("app"), replication.standby_url("app")
    worker_id, job_id = _one_job_running(primary)
    stop = threading.Event()
    beating = threading.Thread(target=_beat, args=(primary, worker_id, stop))
    beating.start()
    try:
        replication.wait_replayed()
        replication.pause_replay()
        time.sleep(5)  # heartbeats go on on the primary, unseen by the standby
        on_primary = run_cli(
            "health", "--stalled-after", "3s", "--json", db_url=primary
        )
        on_standby = run_cli(
            "health",
            "--stalled-after",
            "3s",
            "--max-replication-lag",
            "2s",
            "--json",
            db_url=standby,
        )
        stats = run_cli("stats", "--json", db_url=standby)
    finally:
        replication.resume_replay()
        stop.set()
        beating.join()
    assert on_primary.returncode == 0, on_primary.stdout + on_primary.stderr
    assert on_standby.returncode == 1, on_standby.stderr
    problems = json.loads(on_standby.stdout)
    assert [p["check"] for p in problems] == ["replication_lag"], problems
    assert "behind its primary" in problems[0]["detail"]
    # The worker's heartbeat age is measured from the replay position.
    [worker] = [
        w for w in json.loads(stats.stdout)["workers"] if w["worker_id"] == worker_id
    ]
    assert worker["alive"] and worker["heartbeat_age_s"] < 3, worker
    # Caught up again: no row at all.
    replication.wait_replayed()
    after = run_cli("health", "--max-replication-lag", "2s", db_url=standby)
    assert after.returncode == 0, after.stdout
    with psycopg.connect(primary, autocommit=True) as conn:
        conn.execute("DELETE FROM procrastinate_jobs WHERE id = %s", [job_id])
        conn.execute("DELETE FROM procrastinate_workers WHERE id = %s", [worker_id])


def test_read_commands_work_on_a_standby(replication: Replication) -> None:
    primary, standby = replication.primary_url("app"), replication.standby_url("app")
    with psycopg.connect(primary, autocommit=True) as conn:
        [(job_id,)] = conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, status)"
            " VALUES ('default', 't.done', 'succeeded') RETURNING id"
        )
    replication.wait_replayed()
    for args in (
        ["stats"],
        ["stats", "--json"],
        ["health"],
        ["jobs", "list"],
        ["jobs", "show", str(job_id)],
        ["dlq", "list"],
        ["schedules", "list"],
        ["breakers", "list"],
        ["metrics"],
        ["db", "current"],
    ):
        done = run_cli(*args, db_url=standby)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr, args


def test_writes_and_workers_on_a_standby_get_one_line(replication: Replication) -> None:
    primary, standby = replication.primary_url("app"), replication.standby_url("app")
    with psycopg.connect(primary, autocommit=True) as conn:
        [(job_id,)] = conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, status)"
            " VALUES ('default', 'faults.work', 'failed') RETURNING id"
        )
    replication.wait_replayed()
    for args in (
        ["defer", "faults.work", "--app", "faults.app.app", "--args", '{"n": 1}'],
        ["jobs", "retry", str(job_id)],
        ["jobs", "cancel", str(job_id)],
        ["dlq", "replay", "--all"],
        [*SCHEDULE_ADD, "--args", '{"n": 2}', "--app", "faults.app.app"],
        ["worker", "--app", "faults.app.app", "--one-shot"],
    ):
        done = run_cli(*args, db_url=standby, timeout=60)
        assert done.returncode != 0, (args, done.stdout)
        assert "Traceback" not in done.stderr, (args, done.stderr)
        lines = [line for line in done.stderr.splitlines() if line.startswith("Error")]
        assert len(lines) == 1, (args, done.stderr)
        assert "is a read-only standby" in lines[0], (args, done.stderr)
        assert "127.0.0.1" in lines[0]


def test_multi_host_url_finds_the_primary(replication: Replication) -> None:
    # The standby first: libpq skips it (target_session_attrs=read-write).
    url = (
        f"postgresql://postgres@127.0.0.1:{replication.standby_port},"
        f"127.0.0.1:{replication.primary_port}/app?target_session_attrs=read-write"
    )
    done = run_cli(
        "defer",
        "faults.work",
        "--app",
        "faults.app.app",
        "--args",
        '{"n": 7}',
        "--json",
        db_url=url,
    )
    assert done.returncode == 0, done.stderr
    job_id = json.loads(done.stdout)["job_id"]
    with psycopg.connect(replication.primary_url("app")) as conn:
        row: Any = conn.execute(
            "SELECT task_name, status::text FROM procrastinate_jobs WHERE id = %s",
            [job_id],
        ).fetchone()
    assert row == ("faults.work", "todo")
    dsn = (
        f"host=127.0.0.1,127.0.0.1 port={replication.standby_port},"
        f"{replication.primary_port} user=postgres dbname=app"
        " target_session_attrs=read-write"
    )
    done = run_cli("jobs", "show", str(job_id), "--json", db_url=dsn)
    assert done.returncode == 0, done.stderr
