"""The job event stream (pgjobs.events, ``pgjobs events``) on real PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs import App, Settings
from pgjobs.admin import jobs
from pgjobs.monitoring import events
from tests.support import ROOT, cli_env, run_cli, run_worker


async def collect(
    settings: Settings, until: Callable[[list[events.JobEvent]], bool], **options: Any
) -> tuple[asyncio.Task[None], list[events.JobEvent]]:
    """Start reading the stream in a task; returns it and the growing list."""
    found: list[events.JobEvent] = []
    ready = asyncio.Event()

    async def read() -> None:
        stream = events.stream(settings, **options)
        ready.set()
        async for event in stream:
            found.append(event)
            if until(found):
                return

    task = asyncio.create_task(read())
    await ready.wait()
    await asyncio.sleep(0.3)  # the stream has read its starting id
    return task, found


def kinds(found: list[events.JobEvent], job_id: int) -> list[str]:
    return [e.kind for e in found if e.job_id == job_id]


@pytest.mark.parametrize("listen", [True, False], ids=["listen", "polling"])
async def test_the_stream_sees_each_state_change(
    dash_app: App, settings: Settings, db_url: str, tmp_path: Path, listen: bool
) -> None:
    def done(found: list[events.JobEvent]) -> bool:
        return [e.kind for e in found].count("cancelled") == 1

    task, found = await collect(settings, done, listen=listen, poll_interval=0.2)
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        ok = await dash_app.enqueue_async(conn, "dash.ok", {"n": 1})
        bad = await dash_app.enqueue_async(
            conn, "dash.flaky", {"marker": str(tmp_path / "missing")}
        )
    await run_worker(dash_app)
    jobs.retry_job(db_url, bad)  # type: ignore[arg-type]
    with psycopg.connect(db_url) as sync:
        later = dash_app.enqueue(sync, "dash.ok", {"n": 2}, delay=3600)
    jobs.cancel_job(db_url, later)  # type: ignore[arg-type]
    await asyncio.wait_for(task, 20)
    assert kinds(found, ok) == ["enqueued", "started", "succeeded"]  # type: ignore[arg-type]
    assert kinds(found, bad) == ["enqueued", "started", "dead_lettered", "retried"]  # type: ignore[arg-type]
    letter = next(e for e in found if e.kind == "dead_lettered")
    assert letter.error_type == "ValueError" and "<script>" in (
        letter.error_message or ""
    )
    assert letter.dead_letter_id is not None and letter.task_name == "dash.flaky"
    delayed = kinds(found, later)  # type: ignore[arg-type]
    assert sorted(delayed[:2]) == ["enqueued", "scheduled"] and delayed[2:] == [
        "cancelled"
    ]
    # Each source in its order (enqueues from the jobs by id, starts and
    # successes kept in job rows by time, the rest from the log by id), so
    # every event's cursor is at or past the one before it.
    logged = [e.id for e in found if 0 < e.id < events.STARTED_ID]
    enqueued = [e.id for e in found if e.id < 0]
    kept = [(e.at, e.id) for e in found if e.id >= events.STARTED_ID]
    assert logged == sorted(logged) and enqueued == sorted(enqueued)
    assert kept == sorted(kept) and {
        e.kind for e in found if e.id >= events.STARTED_ID
    } <= {
        "started",
        "succeeded",
    }
    assert (ok + events.SUCCEEDED_ID, "succeeded") in {(e.id, e.kind) for e in found}
    places = [events.Position.parse(e.cursor) for e in found]
    assert all(
        a.log_id <= b.log_id
        and a.job_id <= b.job_id
        and (a.run_at, a.run_id) <= (b.run_at, b.run_id)  # type: ignore[operator]
        for a, b in itertools.pairwise(places)
    )
    assert places[-1].job_id == later


async def test_filters_backlog_and_resuming(
    dash_app: App, settings: Settings, db_url: str
) -> None:
    with psycopg.connect(db_url) as conn:
        first = dash_app.enqueue(conn, "dash.ok", {"n": 1}, queue="a")
        second = dash_app.enqueue(conn, "dash.ok", {"n": 2}, queue="b")
    newest = events.latest(db_url, limit=5, queue="b")
    assert [(e.job_id, e.kind, e.queue_name) for e in newest] == [
        (second, "enqueued", "b")
    ]
    assert [e.job_id for e in events.latest(db_url, limit=1)] == [second]

    async def take(n: int, **options: Any) -> list[events.JobEvent]:
        got: list[events.JobEvent] = []
        async for event in events.stream(settings, poll_interval=0.1, **options):
            got.append(event)
            if len(got) == n:
                break
        return got

    backlog = await asyncio.wait_for(take(2, backlog=5), 10)
    assert [e.job_id for e in backlog] == [first, second]
    resumed = await asyncio.wait_for(
        take(1, after_id=backlog[0].id, statement_timeout=1.5), 10
    )
    assert [e.job_id for e in resumed] == [second]
    only_a = await asyncio.wait_for(take(1, after_id=0, queue="a"), 10)
    assert [e.job_id for e in only_a] == [first]


async def test_an_event_committed_after_later_ones_is_still_delivered(
    dash_app: App, settings: Settings, db_url: str
) -> None:
    def two(found: list[events.JobEvent]) -> bool:
        return len(found) == 2

    task, found = await collect(settings, two, poll_interval=0.1, listen=False)
    with psycopg.connect(db_url) as slow:  # takes the lower event id, commits last
        early = dash_app.enqueue(slow, "dash.ok", {"n": 1})
        with psycopg.connect(db_url) as fast:
            late = dash_app.enqueue(fast, "dash.ok", {"n": 2})
        deadline = time.monotonic() + 10
        while not found and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert [e.job_id for e in found] == [late]
    await asyncio.wait_for(task, 10)
    assert [e.job_id for e in found] == [late, early]


def test_events_command_prints_the_latest(
    dash_app: App, db_url: str, tmp_path: Path
) -> None:
    with psycopg.connect(db_url) as conn:
        job_id = dash_app.enqueue(conn, "dash.flaky", {"marker": str(tmp_path / "x")})
        dash_app.enqueue(conn, "dash.ok", {"n": 1})
    asyncio.run(run_worker(dash_app))
    result = run_cli("events", "--json", "--task", "dash.flaky", db_url=db_url)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(e["job_id"], e["kind"]) for e in lines] == [
        (job_id, "enqueued"),
        (job_id, "started"),
        (job_id, "dead_lettered"),
    ]
    text = run_cli("events", "--limit", "1", db_url=db_url)
    assert text.returncode == 0
    # The two jobs ran side by side: the newest event is either one's end.
    [newest] = events.latest(db_url, limit=1)
    assert newest.kind in ("succeeded", "dead_lettered")
    assert text.stdout.count("\n") == 1
    assert f"job {newest.job_id} " in text.stdout and newest.kind in text.stdout
    bad = run_cli("events", "--limit", "-1", db_url=db_url)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def lines_of(process: subprocess.Popen[str]) -> queue.Queue[str]:
    found: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            found.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return found


@pytest.fixture
def follower(db_url: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pgjobs",
            "events",
            "--follow",
            "--json",
            "--limit",
            "0",
        ],
        env=cli_env(db_url, PGJOBS_EVENTS_POLL_INTERVAL="0.2"),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield process
    process.kill()
    process.communicate()


@pytest.mark.slow
def test_events_follow_sees_the_jobs_of_two_worker_processes(
    dash_app: App,
    db_url: str,
    tmp_path: Path,
    follower: subprocess.Popen[str],
    worker_processes: Callable[..., subprocess.Popen[bytes]],
) -> None:
    output = lines_of(follower)
    # Enqueue a first job until the follower prints it: it is reading.
    first = None
    for _ in range(30):
        with psycopg.connect(db_url) as conn:
            first = dash_app.enqueue(conn, "dash.ok", {"n": -1})
        try:
            json.loads(output.get(timeout=1))
            break
        except queue.Empty:
            continue
    for name in ("w1", "w2"):
        worker_processes(
            "--app", "tests.support.apps.dashboard.app", "-c", "1", "--name", name
        )
    with psycopg.connect(db_url) as conn:
        ok = [
            dash_app.enqueue(conn, "dash.ok", {"n": n, "sleep": 0.2}) for n in range(10)
        ]
        bad = dash_app.enqueue(conn, "dash.flaky", {"marker": str(tmp_path / "none")})
    seen: dict[int, list[str]] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            event = json.loads(output.get(timeout=1))
        except queue.Empty:
            continue
        if event["job_id"] > (first or 0):
            seen.setdefault(event["job_id"], []).append(event["kind"])
        finished = [k for i, k in seen.items() if i in ok and "succeeded" in k]
        if len(finished) == 10 and "dead_lettered" in seen.get(bad, []):  # type: ignore[arg-type]
            break
    for job_id in ok:
        assert seen.get(job_id) == ["enqueued", "started", "succeeded"], (job_id, seen)  # type: ignore[call-overload]
    assert seen[bad] == ["enqueued", "started", "dead_lettered"]  # type: ignore[index]
    with psycopg.connect(db_url) as conn:
        workers = conn.execute("SELECT count(*) FROM procrastinate_workers").fetchone()
    assert workers == (2,)
    assert follower.poll() is None  # still following


async def test_a_job_rescued_from_a_lost_worker_is_a_rescued_event(
    settings: Settings, db_url: str
) -> None:
    from pgjobs import RetryPolicy
    from pgjobs.failures.stalled import rescue_stalled_jobs

    app = App(settings=settings)
    app.task(name="dash.long", retry=RetryPolicy(max_attempts=3, base_delay=60))(
        lambda: None
    )
    with psycopg.connect(db_url) as conn:
        worker = conn.execute(
            "INSERT INTO procrastinate_workers (last_heartbeat) "
            "VALUES (now() - interval '1 minute') RETURNING id"
        ).fetchone()
        job = conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, status, worker_id) "
            "VALUES ('default', 'dash.long', 'doing', %s) RETURNING id",
            worker,
        ).fetchone()
    assert job is not None
    after = events.latest(db_url, limit=1)[-1].id if events.latest(db_url) else 0
    async with app.open_async():
        [rescued] = await rescue_stalled_jobs(app, stalled_after=5)
    assert rescued.job_id == job[0]
    found = [e for e in events.latest(db_url, limit=10) if e.id > after]
    # Retried in 60 s: 'scheduled' for its new run time, and the rescue.
    assert sorted((e.job_id, e.kind, e.error_type or "") for e in found) == [
        (job[0], "rescued", "WorkerLost"),
        (job[0], "scheduled", ""),
    ]


def test_a_job_handed_back_by_a_stopping_worker_is_an_interrupted_event(
    db_url: str,
) -> None:
    with psycopg.connect(db_url) as conn:
        worker = conn.execute(
            "INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now()) RETURNING id"
        ).fetchone()
        job = conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, status, worker_id) "
            "VALUES ('default', 'dash.long', 'doing', %s) RETURNING id",
            worker,
        ).fetchone()
    assert worker is not None and job is not None
    newest = events.latest(db_url, limit=1)
    after = newest[-1].id if newest else 0
    with psycopg.connect(db_url) as conn:  # what a worker does when its grace ends
        conn.execute(
            "SELECT * FROM pgjobs.interrupt_job(%s, %s, 'shutdown grace ended', 3, "
            "NULL, NULL, NULL, NULL, false)",
            (job[0], worker[0]),
        )
    found = [e for e in events.latest(db_url, limit=10) if e.id > after]
    assert [(e.job_id, e.kind) for e in found] == [(job[0], "interrupted")]
