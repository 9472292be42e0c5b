"""Flow control, pause and resume (README "Flow control"): the admin API, the
SQL functions, the claim paths (batch claim, prefetch), real worker
processes (``pgjobs worker`` and ``procrastinate worker``) and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from pgjobs import App, InvalidQueueName
from pgjobs.admin import queues
from pgjobs.monitoring import views
from tests.support import ROOT, cli_env, rows, run_cli, wait_for

APP = "tests.support.apps.flow.app"


def enqueue(url: str, queue: str, count: int = 1, seconds: float = 0.0) -> list[int]:
    from tests.support.apps.flow import app

    with psycopg.connect(url) as conn:
        ids = app.enqueue_many(
            conn, "flow.work", [{"seconds": seconds}] * count, queue=queue
        )
    return [job_id for job_id in ids if job_id is not None]


def started(url: str, ids: list[int]) -> dict[int, Any]:
    found = rows(
        url,
        f"SELECT job_id, min(started_at) FROM flow_runs"
        f" WHERE job_id = ANY(ARRAY{ids}::bigint[]) GROUP BY job_id",
    )
    return dict(found)


def worker_id(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "INSERT INTO procrastinate_workers DEFAULT VALUES RETURNING id"
    ).fetchone()
    assert row is not None
    return int(row[0])


def claim(
    conn: psycopg.Connection[Any],
    worker: int,
    queues_: list[str] | None,
    limit: int = 10,
    start: int | None = None,
) -> list[int]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT id FROM pgjobs.fetch_jobs(%s, %s, %s, %s) ORDER BY id",
            (queues_, worker, limit, start),
        ).fetchall()
    ]


# -- the admin API and the SQL functions -----------------------------------


def test_pause_resume_and_list(db_url: str) -> None:
    enqueue(db_url, "mail", 2)
    first = queues.pause_queue(db_url, "mail", paused_by="ops@example")
    assert first.changed and first.paused and first.paused_by == "ops@example"
    assert first.paused_at is not None
    again = queues.pause_queue(db_url, "mail", paused_by="someone else")
    assert not again.changed and again.paused_by == "ops@example"
    # A queue with no jobs can be paused before its first job arrives.
    queues.pause_queue(db_url, "empty")
    listed = {q.queue_name: q for q in queues.list_queues(db_url)}
    assert listed["mail"].paused and listed["mail"].waiting == 2
    assert listed["mail"].paused_by == "ops@example"
    assert listed["empty"].paused and listed["empty"].waiting == 0
    stats = {q.queue_name: q for q in views.queue_stats(db_url)}
    assert stats["mail"].paused and stats["empty"].paused
    resumed = queues.resume_queue(db_url, "mail")
    assert resumed.changed and not resumed.paused
    assert not queues.resume_queue(db_url, "mail").changed
    listed = {q.queue_name: q for q in queues.list_queues(db_url)}
    assert not listed["mail"].paused and listed["mail"].paused_at is None


def test_plain_sql_functions(conn: psycopg.Connection[Any]) -> None:
    assert conn.execute("SELECT pgjobs.pause_queue('q')").fetchone() == (True,)
    assert conn.execute("SELECT pgjobs.pause_queue('q')").fetchone() == (False,)
    assert conn.execute(
        "SELECT queue_name, paused_by = session_user FROM pgjobs.paused_queues"
    ).fetchall() == [("q", True)]
    assert conn.execute("SELECT pgjobs.resume_queue('q')").fetchone() == (True,)
    assert conn.execute("SELECT pgjobs.resume_queue('q')").fetchone() == (False,)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="1 to 128"):
        conn.execute("SELECT pgjobs.pause_queue('')")


@pytest.mark.parametrize(
    ("name", "message"),
    [("", "1 to 128"), ("q" * 129, "1 to 128"), ("a\x00b", "NUL")],
)
def test_bad_queue_names_are_refused(db_url: str, name: str, message: str) -> None:
    with pytest.raises(InvalidQueueName, match=message):
        queues.pause_queue(db_url, name)
    with pytest.raises(InvalidQueueName, match=message):
        queues.resume_queue(db_url, name)
    assert rows(db_url, "SELECT * FROM pgjobs.paused_queues") == []


def test_resume_wakes_listening_workers(db_url: str) -> None:
    queues.pause_queue(db_url, "wake")
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute('LISTEN "procrastinate_queue_v1#wake"')
        listener.execute("LISTEN procrastinate_any_queue_v1")
        queues.resume_queue(db_url, "wake")
        notifies = listener.notifies(timeout=2, stop_after=2)
        got = [(n.channel, json.loads(n.payload)) for n in notifies]
    assert sorted(channel for channel, _ in got) == [
        "procrastinate_any_queue_v1",
        "procrastinate_queue_v1#wake",
    ]
    assert all(payload["type"] == "job_inserted" for _, payload in got)


# -- the claim -------------------------------------------------------------


def test_claim_skips_paused_queues(db_url: str) -> None:
    a = enqueue(db_url, "a", 3)
    b = enqueue(db_url, "b", 2)
    queues.pause_queue(db_url, "a")
    with psycopg.connect(db_url, autocommit=True) as conn:
        worker = worker_id(conn)
        assert claim(conn, worker, ["a"]) == []  # nothing left to look at
        assert claim(conn, worker, None, limit=10) == b
        queues.resume_queue(db_url, "a")
        assert claim(conn, worker, ["a", "b"]) == a


def test_prefetched_job_of_a_queue_paused_meanwhile_is_not_started(
    db_url: str, app: App
) -> None:
    import asyncio

    [job] = enqueue(db_url, "p")

    async def run() -> tuple[set[int], set[int], set[int]]:
        async with app.open_async():
            manager: Any = app.job_manager
            worker = await manager.register_worker()
            [held] = await manager.fetch_jobs(["p"], worker, limit=1, start=0)
            assert held.id == job
            queues.pause_queue(db_url, "p")
            released: set[int] = set()
            done, started_ = await manager.finish_jobs(
                [], [job], worker_id=worker, released=released
            )
            return done, started_, released

    done, started_, released = asyncio.run(run())
    assert (done, started_, released) == (set(), set(), {job})
    assert rows(
        db_url,
        f"SELECT status::text, worker_id FROM procrastinate_jobs WHERE id = {job}",
    ) == [("todo", None)]
    assert (
        rows(
            db_url,
            f"SELECT type::text FROM procrastinate_events WHERE job_id = {job}"
            " AND type = 'started'",
        )
        == []
    )


# -- real workers ----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_two_worker_processes_honour_a_pause_and_start_at_once_on_resume(
    runs_db: str, worker_processes: Callable[..., subprocess.Popen[bytes]]
) -> None:
    queues.pause_queue(runs_db, "held")
    for name in ("w1", "w2"):
        worker_processes("--app", APP, "-c", "3", "--name", name)
    other = enqueue(runs_db, "other", 2)
    held = enqueue(runs_db, "held", 4)
    wait_for(lambda: len(started(runs_db, other)) == 2, what="the other queue's jobs")
    time.sleep(2)  # both workers idle, their claims have seen the pause
    assert started(runs_db, held) == {}
    assert rows(
        runs_db,
        f"SELECT count(*) FROM procrastinate_jobs WHERE id = ANY(ARRAY{held})"
        " AND status = 'todo'",
    ) == [(4,)]
    resumed_at = time.monotonic()
    queues.resume_queue(runs_db, "held")
    wait_for(lambda: len(started(runs_db, held)) == 4, what="the resumed jobs")
    took = time.monotonic() - resumed_at
    # The workers poll every 5 s with LISTEN: the resume's NOTIFY woke them.
    assert took < 2.0, took


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_running_job_finishes_while_its_queue_is_paused(
    runs_db: str, worker_processes: Callable[..., subprocess.Popen[bytes]]
) -> None:
    worker_processes("--app", APP, "-c", "2")
    [long] = enqueue(runs_db, "slow", seconds=2)
    wait_for(lambda: started(runs_db, [long]), what="the long job to start")
    queues.pause_queue(runs_db, "slow")
    [later] = enqueue(runs_db, "slow")
    wait_for(
        lambda: (
            rows(
                runs_db,
                f"SELECT status::text FROM procrastinate_jobs WHERE id = {long}",
            )
            == [("succeeded",)]
        ),
        what="the running job to finish",
    )
    time.sleep(1)
    assert started(runs_db, [later]) == {}
    queues.resume_queue(runs_db, "slow")
    wait_for(lambda: started(runs_db, [later]), timeout=5, what="the later job")


@pytest.fixture
def procrastinate_worker(runs_db: str) -> Iterator[Callable[[], subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []

    def start() -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "procrastinate",
                f"--app={APP}",
                "worker",
                "--concurrency=2",
            ],
            env=cli_env(runs_db),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.kill()
        process.wait()


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_procrastinate_worker_honours_a_pause(
    runs_db: str, procrastinate_worker: Callable[[], subprocess.Popen[str]]
) -> None:
    queues.pause_queue(runs_db, "held")
    procrastinate_worker()
    other = enqueue(runs_db, "other")
    held = enqueue(runs_db, "held", 2)
    wait_for(lambda: started(runs_db, other), what="the other queue's job")
    time.sleep(1.5)
    assert started(runs_db, held) == {}
    queues.resume_queue(runs_db, "held")
    wait_for(lambda: len(started(runs_db, held)) == 2, timeout=3, what="resumed jobs")


# -- the CLI ---------------------------------------------------------------


def test_cli_pause_list_resume(db_url: str) -> None:
    enqueue(db_url, "mail", 3)
    paused = run_cli("queues", "pause", "mail", db_url=db_url)
    assert (paused.returncode, paused.stdout.strip()) == (0, "queue mail paused")
    again = run_cli("queues", "pause", "mail", db_url=db_url)
    assert again.returncode == 0 and "already paused" in again.stdout
    listed = run_cli("queues", "list", db_url=db_url)
    assert listed.returncode == 0
    [header, line] = listed.stdout.strip().splitlines()
    assert header.split()[:3] == ["QUEUE", "STATE", "WAITING"]
    assert line.split()[:3] == ["mail", "PAUSED", "3"]
    as_json = run_cli("queues", "list", "--json", db_url=db_url)
    [mail] = json.loads(as_json.stdout)
    assert mail["queue_name"] == "mail" and mail["paused"] is True
    assert mail["waiting"] == 3 and mail["paused_by"] and mail["paused_at"]
    resumed = run_cli("queues", "resume", "mail", "--json", db_url=db_url)
    assert resumed.returncode == 0
    assert json.loads(resumed.stdout) | {"paused_at": None} == {
        "queue_name": "mail",
        "paused": False,
        "changed": True,
        "paused_at": None,
        "paused_by": None,
    }
    noop = run_cli("queues", "resume", "mail", db_url=db_url)
    assert (noop.returncode, noop.stdout.strip()) == (
        0,
        "queue mail is not paused: nothing to resume",
    )
    stats = run_cli("stats", "--json", db_url=db_url)
    [queue] = json.loads(stats.stdout)["queues"]
    assert queue["paused"] is False and queue["expired"] == 0


@pytest.mark.parametrize("name", ["", "q" * 129])
def test_cli_bad_names(db_url: str, name: str) -> None:
    for command in ("pause", "resume"):
        result = run_cli("queues", command, name, db_url=db_url)
        assert result.returncode == 1, result
        assert result.stderr.startswith("Error: queue name must be 1 to 128")
        assert len(result.stderr.strip().splitlines()) == 1
    assert rows(db_url, "SELECT * FROM pgjobs.paused_queues") == []
