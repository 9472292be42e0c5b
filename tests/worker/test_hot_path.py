"""The worker's batched hot path keeps procrastinate's queue semantics."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import uuid
from typing import Any

import psycopg
import pytest
from procrastinate import app as procrastinate_app
from procrastinate import jobs as procrastinate_jobs
from procrastinate import manager, psycopg_connector, worker

from pgjobs import App

# procrastinate code that pgjobs replaces or wraps: the worker's
# (pgjobs.worker.worker, whose overrides delegate to pgjobs.worker.executor
# and pgjobs.worker.completer), pgjobs.enqueueing.job_manager,
# pgjobs.db.connector and pgjobs.app. A procrastinate upgrade that changes one
# of these must be re-checked against pgjobs' version (then update the hash).
PINNED = {
    worker.Worker._fetch_and_process_jobs: "2963aa354dfda4d6",
    worker.Worker._persist_job_status: "821921c86130d151",
    worker.Worker._process_job: "55a67c0ff525add9",
    worker.Worker._start_side_tasks: "2623df64cb23ce26",
    worker.Worker._update_heartbeat: "a45b4b3b030e0827",
    worker.Worker._poll_jobs_to_abort: "73ddd46a142855e6",
    worker.Worker._log_extra: "884ffa771abc1e77",
    worker.Worker._run_loop: "c92ccad5fa07f7a1",
    worker.Worker.run: "9a7c6a1ab8301be0",
    worker.Worker._shutdown: "7e40cbd5efe3acf5",
    manager.JobManager.fetch_job: "eb92906b55c10d9c",
    manager.JobManager.finish_job: "eeb7dbb92f90508d",
    manager.JobManager.update_heartbeat: "91a7b7aa717eace4",
    manager.JobManager.unregister_worker: "087d3ab9c74afe90",
    psycopg_connector.PsycopgConnector._create_pool: "33693de57a738c77",
    procrastinate_app.App.run_worker: "4ce03d28004a379a",
}


def test_overridden_procrastinate_code_is_unchanged() -> None:
    changed = [
        func.__qualname__
        for func, digest in PINNED.items()
        if hashlib.sha256(inspect.getsource(func).encode()).hexdigest()[:16] != digest
    ]
    assert not changed, (
        f"procrastinate changed {changed}: re-check pgjobs.worker (worker.py, "
        "executor.py, completer.py), enqueueing/job_manager.py, db/connector.py "
        "and app.py against the new code, then update PINNED"
    )


def add(conn: psycopg.Connection[Any], *rows: tuple[Any, ...]) -> list[int]:
    """Insert (queue, priority, lock, scheduled_in_s, status) rows; return ids."""
    ids = []
    for queue, priority, lock, delay, status in rows:
        row = conn.execute(
            "INSERT INTO procrastinate_jobs"
            " (queue_name, task_name, priority, lock, scheduled_at, status)"
            " VALUES (%s, 't', %s, %s,"
            "  CASE WHEN %s::float IS NULL THEN NULL"
            "       ELSE now() + %s::float * interval '1 second' END, %s)"
            " RETURNING id",
            (queue, priority, lock, delay, delay, status),
        ).fetchone()
        assert row is not None
        ids.append(row[0])
    conn.commit()
    return ids


async def claim(app: App, limit: int, queues: list[str] | None = None) -> list[int]:
    async with app.open_async():
        worker_id = await app.job_manager.register_worker()
        found = await app.job_manager.fetch_jobs(queues, worker_id, limit)
    return [job.id for job in found]


async def test_batch_claim_order_queues_and_schedule(
    app: App, conn: psycopg.Connection[Any]
) -> None:
    low, high, later, other, mid = add(
        conn,
        ("q", 0, None, None, "todo"),
        ("q", 9, None, None, "todo"),
        ("q", 20, None, 3600, "todo"),  # not due yet
        ("other", 50, None, None, "todo"),
        ("q", 5, None, None, "todo"),
    )
    assert await claim(app, 2, ["q"]) == [high, mid]
    assert await claim(app, 10, ["q"]) == [low]
    assert await claim(app, 10) == [other]
    assert await claim(app, 10) == []
    statuses = dict(conn.execute("SELECT id, status::text FROM procrastinate_jobs"))
    assert statuses[later] == "todo" and statuses[high] == "doing"


def events(conn: psycopg.Connection[Any]) -> list[tuple[int, str]]:
    """The jobs' events but 'deferred', in time order (one transaction's by
    job: their ids are in order for each job only, those kept in job rows
    above every logged one)."""
    return [
        (job_id, kind)
        for job_id, kind in conn.execute(
            "SELECT job_id, type::text FROM procrastinate_events"
            " WHERE type <> 'deferred' ORDER BY at, job_id, id"
        )
    ]


async def test_batch_paths_write_procrastinates_status_events(
    app: App, conn: psycopg.Connection[Any]
) -> None:
    """The batch functions write the events procrastinate's per-row trigger
    would have written, once each, and leave the trigger on for the rest."""
    a, b, c, d = add(conn, *[("q", 0, None, None, "todo")] * 4)
    assert sorted(await claim(app, 3)) == [a, b, c]
    assert sorted(events(conn)) == [(a, "started"), (b, "started"), (c, "started")]
    status = procrastinate_jobs.Status
    async with app.open_async():
        await app.job_manager.finish_jobs(
            [(a, status.SUCCEEDED, False), (b, status.ABORTED, False)]
        )
        # A job never started (todo) and finished: procrastinate calls it
        # cancelled.
        await app.job_manager.finish_jobs([(d, status.SUCCEEDED, False)])
    assert events(conn)[3:] == [(a, "succeeded"), (b, "aborted"), (d, "cancelled")]
    # Any other update goes through procrastinate's trigger, in the same
    # session as a claim too.
    with conn.transaction():
        conn.execute("SELECT * FROM pgjobs.fetch_jobs(NULL, NULL, 0)")
        conn.execute(
            "UPDATE procrastinate_jobs SET status = 'failed' WHERE id = %s", [c]
        )
    assert [event for event in events(conn) if event[0] == c] == [
        (c, "started"),
        (c, "failed"),
    ]
    assert len(events(conn)) == 7


async def test_batch_claim_never_takes_two_jobs_of_one_lock(
    app: App, conn: psycopg.Connection[Any]
) -> None:
    first, second, free, _running, blocked = add(
        conn,
        ("q", 0, "acct-1", None, "todo"),
        ("q", 9, "acct-1", None, "todo"),  # higher priority: goes first
        ("q", 0, None, None, "todo"),
        ("q", 0, "acct-2", None, "doing"),
        ("q", 5, "acct-2", None, "todo"),  # its lock is taken by a running job
    )
    assert sorted(await claim(app, 10)) == sorted([second, free])
    assert await claim(app, 10) == []  # acct-1 runs, acct-2 runs
    conn.execute(
        "UPDATE procrastinate_jobs SET status = 'succeeded' WHERE id = %s", [second]
    )
    conn.commit()
    assert await claim(app, 10) == [first]
    assert blocked not in await claim(app, 10)


async def test_group_finish_skips_jobs_no_longer_running(
    app: App, conn: psycopg.Connection[Any]
) -> None:
    a, b, c = add(conn, *[("q", 0, None, None, "todo")] * 3)
    assert sorted(await claim(app, 3)) == [a, b, c]
    conn.execute("UPDATE procrastinate_jobs SET status = 'todo' WHERE id = %s", [c])
    conn.commit()
    status = procrastinate_jobs.Status
    async with app.open_async():
        done, _ = await app.job_manager.finish_jobs(
            [
                (a, status.SUCCEEDED, False),
                (b, status.ABORTED, True),
                (c, status.SUCCEEDED, False),
            ]
        )
    assert done == {a, b, c}  # todo counts as finishable, like procrastinate's
    rows = dict(conn.execute("SELECT id, status::text FROM procrastinate_jobs"))
    assert rows == {a: "succeeded", c: "succeeded"}  # b deleted
    async with app.open_async():
        assert await app.job_manager.finish_jobs([(a, status.FAILED, False)]) == (
            set(),
            set(),
        )
    [(attempts,)] = conn.execute(
        "SELECT attempts FROM procrastinate_jobs WHERE id = %s", [a]
    )
    assert attempts == 1


async def test_heartbeat_brings_back_a_pruned_worker_row(
    app: App, conn: psycopg.Connection[Any]
) -> None:
    async with app.open_async():
        worker_id = await app.job_manager.register_worker()
        conn.execute("DELETE FROM procrastinate_workers WHERE id = %s", [worker_id])
        # As on a standby promoted before the registration reached it.
        conn.execute(
            "SELECT setval('procrastinate_workers_id_seq', %s, false)", [worker_id]
        )
        conn.commit()
        await app.job_manager.heartbeat(worker_id, uuid.uuid4(), [])
        # Its claims are valid again (worker_id is a foreign key).
        add(conn, ("q", 0, None, None, "todo"))
        assert len(await app.job_manager.fetch_jobs(None, worker_id, 5)) == 1
    assert conn.execute(
        "SELECT count(*) FROM procrastinate_workers WHERE id = %s", [worker_id]
    ).fetchone() == (1,)
    # ... and no new worker is given its id again (the row may be one a
    # failover lost, its id handed out again by the promoted standby).
    [(next_id,)] = conn.execute(
        "INSERT INTO procrastinate_workers DEFAULT VALUES RETURNING id"
    )
    assert next_id > worker_id


@pytest.mark.parametrize(
    ("concurrency", "prefetch"), [(1, 0), (10, 0), (1, 5), (10, 10)]
)
async def test_worker_runs_each_job_once_in_priority_order(
    app: App, conn: psycopg.Connection[Any], concurrency: int, prefetch: int
) -> None:
    runs: list[tuple[int, int]] = []
    running = most = 0

    @app.task(name="t.record", pass_context=True)
    async def record(context: Any, n: int) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.001 * (n % 3))
        running -= 1
        runs.append((context.job.priority, n))

    for priority in (0, 7, 3):
        app.enqueue_many(conn, record, [{"n": n} for n in range(40)], priority=priority)
    conn.commit()
    async with app.open_async():
        await app.run_worker_async(
            concurrency=concurrency,
            prefetch=prefetch,  # type: ignore[typeddict-unknown-key]
            wait=False,
            install_signal_handlers=False,
        )
    assert sorted(runs) == sorted((p, n) for p in (0, 7, 3) for n in range(40))
    assert most <= concurrency
    if concurrency == 1:
        assert [p for p, _ in runs] == [7] * 40 + [3] * 40 + [0] * 40
    rows = conn.execute(
        "SELECT status::text, count(*), sum(attempts) FROM procrastinate_jobs GROUP BY 1"
    ).fetchall()
    assert rows == [("succeeded", 120, 120)]
    [(started,)] = conn.execute(
        "SELECT count(*) FROM procrastinate_events WHERE type = 'started'"
    )
    assert started == 120
    # Each job's 'started' event (written later for a prefetched job) comes
    # before its outcome's.
    [(misordered,)] = conn.execute(
        "SELECT count(*) FROM procrastinate_events AS started"
        " JOIN procrastinate_events AS done ON done.job_id = started.job_id"
        " WHERE started.type = 'started' AND done.type = 'succeeded'"
        "   AND done.id < started.id"
    )
    assert misordered == 0


async def test_prefetched_jobs_never_run_two_of_one_lock_at_once(
    app: App, conn: psycopg.Connection[Any]
) -> None:
    holders: dict[str, int] = {}
    overlaps: list[str] = []
    ran: list[int] = []
    all_ran = asyncio.Event()

    @app.task(name="t.locked")
    async def locked(lock: str, n: int) -> None:
        if holders.get(lock):
            overlaps.append(lock)
        holders[lock] = holders.get(lock, 0) + 1
        await asyncio.sleep(0.002)
        holders[lock] -= 1
        ran.append(n)
        if len(ran) == 60:
            all_ran.set()

    for n in range(60):
        lock = f"account-{n % 3}"
        app.enqueue(conn, locked, {"lock": lock, "n": n}, lock=lock)
    conn.commit()
    async with app.open_async():
        worker = asyncio.create_task(
            app.run_worker_async(
                concurrency=4,
                prefetch=8,  # type: ignore[typeddict-unknown-key]
                install_signal_handlers=False,
            )
        )
        await asyncio.wait_for(all_ran.wait(), timeout=60)
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    assert overlaps == []
    assert sorted(ran) == list(range(60))
    [(succeeded,)] = conn.execute(
        "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
    )
    assert succeeded == 60


async def test_a_claim_starts_only_the_first_jobs_it_is_told_to(
    app: App, conn: psycopg.Connection[Any]
) -> None:
    ids = add(conn, *[("q", p, None, None, "todo") for p in (0, 5, 0, 9, 0)])
    async with app.open_async():
        worker_id = await app.job_manager.register_worker()
        claimed = await app.job_manager.fetch_jobs(None, worker_id, 4, start=2)
    # Start order: priority 9, 5, then the oldest of priority 0.
    assert [job.id for job in claimed] == [ids[3], ids[1], ids[0], ids[2]]
    started = [job_id for job_id, kind in events(conn) if kind == "started"]
    assert sorted(started) == sorted([ids[3], ids[1]])
    statuses = dict(conn.execute("SELECT id, status::text FROM procrastinate_jobs"))
    assert [statuses[i] for i in ids] == ["doing", "doing", "doing", "doing", "todo"]


async def test_a_prefetched_job_starts_only_once_its_start_is_recorded(
    app: App, conn: psycopg.Connection[Any]
) -> None:
    ids = add(conn, *[("q", 0, None, None, "todo")] * 3)
    async with app.open_async():
        worker_id = await app.job_manager.register_worker()
        await app.job_manager.fetch_jobs(None, worker_id, 3, start=1)
        # The third was taken back meanwhile (e.g. by a rescue).
        conn.execute(
            "UPDATE procrastinate_jobs SET status = 'todo' WHERE id = %s", [ids[2]]
        )
        conn.commit()
        done, started = await app.job_manager.finish_jobs(
            [(ids[0], procrastinate_jobs.Status.SUCCEEDED, False)], ids[1:]
        )
    assert (done, started) == ({ids[0]}, {ids[1]})
    assert events(conn) == [
        (ids[0], "started"),
        (ids[2], "deferred_for_retry"),
        (ids[0], "succeeded"),
        (ids[1], "started"),
    ]


async def test_jobs_claimed_but_not_started_are_put_back(
    app: App, conn: psycopg.Connection[Any]
) -> None:
    running, lost_reply = add(conn, *[("q", 0, None, None, "todo")] * 2)
    async with app.open_async():
        worker_id = await app.job_manager.register_worker()
        assert len(await app.job_manager.fetch_jobs(None, worker_id, 2)) == 2
        # The worker runs only the first; the second's claim reply was lost.
        released = await app.job_manager.release_unstarted_jobs(worker_id, [running])
    assert released == [lost_reply]
    rows = dict(conn.execute("SELECT id, status::text FROM procrastinate_jobs"))
    assert rows == {running: "doing", lost_reply: "todo"}
    [(attempts,)] = conn.execute(
        "SELECT attempts FROM procrastinate_jobs WHERE id = %s", [lost_reply]
    )
    assert attempts == 0


async def test_a_queue_too_long_for_a_channel_still_wakes_its_worker(
    app: App, conn: psycopg.Connection[Any]
) -> None:
    queue = "reports-" + "x" * 50  # 58 bytes: no channel of its own
    ran = asyncio.Event()

    @app.task(name="t.long", queue=queue)
    async def long_queue_task() -> None:
        ran.set()

    async with app.open_async():
        worker = asyncio.create_task(
            app.run_worker_async(
                queues=[queue],
                install_signal_handlers=False,
                fetch_job_polling_interval=300,  # only a notification wakes it
            )
        )
        await asyncio.sleep(1.0)
        app.enqueue(conn, long_queue_task)
        conn.commit()
        await asyncio.wait_for(ran.wait(), timeout=20)
        assert not worker.done()
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)


def explain_nested(conn: psycopg.Connection[Any], *settings: str) -> list[str]:
    """From now on, the plan of every statement ``conn`` runs, nested ones
    included (auto_explain), is appended to the returned list."""
    plans: list[str] = []
    conn.add_notice_handler(lambda notice: plans.append(notice.message_primary or ""))
    conn.execute("LOAD 'auto_explain'")
    for setting in (
        *settings,
        "auto_explain.log_min_duration = 0",
        "auto_explain.log_nested_statements = on",
        "client_min_messages = log",
    ):
        conn.execute(f"SET {setting}")
    return plans


def test_claim_plan_made_on_a_near_empty_table_still_uses_the_indexes(
    db_url: str,
) -> None:
    # A worker started on a new database plans its claim (once per connection)
    # while the table is nearly empty. After the table has grown, without an
    # ANALYZE in between, that plan must still walk the indexes: a sequential
    # scan of every job per claim was what a 50-row plan did at 85,000 rows.
    insert = (
        "INSERT INTO procrastinate_jobs (queue_name, task_name, args)"
        " SELECT 'q', 't', '{}' FROM generate_series(1, %s)"
    )
    claim = "SELECT id FROM pgjobs.fetch_jobs(NULL, NULL, 5)"
    with (
        psycopg.connect(db_url, autocommit=True) as worker_conn,
        psycopg.connect(db_url, autocommit=True) as setup,
    ):
        setup.execute(insert, [50])
        for _ in range(6):
            assert len(worker_conn.execute(claim).fetchall()) == 5
        setup.execute(insert, [20_000])
        setup.execute("UPDATE procrastinate_jobs SET status = 'succeeded'")
        setup.execute(insert, [100])
        assert setup.execute(
            "SELECT last_analyze IS NULL AND last_autoanalyze IS NULL"
            "  FROM pg_stat_user_tables WHERE relname = 'procrastinate_jobs'"
        ).fetchone() == (True,)

        plans = explain_nested(worker_conn)
        claimed = worker_conn.execute(claim).fetchall()
        assert len(claimed) == 5
        [inner] = [plan for plan in plans if "UPDATE procrastinate_jobs" in plan]
        assert "Index" in inner
        assert "Seq Scan on procrastinate_jobs" not in inner, inner


def test_claims_and_finishes_are_never_jit_compiled(db_url: str) -> None:
    # Before PostgreSQL 18 the claim's disabled sort costs 10^10, so a server
    # with JIT (on by default when built with LLVM) compiled every claim:
    # 250-450 ms each instead of about 1 ms. Whatever the thresholds, the
    # worker's two batch statements must run without it.
    with psycopg.connect(db_url, autocommit=True) as conn:
        add(conn, *[("q", 0, None, None, "todo")] * 3)
        worker_id = conn.execute(
            "INSERT INTO procrastinate_workers DEFAULT VALUES RETURNING id"
        ).fetchone()
        plans = explain_nested(
            conn,
            "jit = on",
            "jit_above_cost = 0",
            "jit_inline_above_cost = 0",
            "jit_optimize_above_cost = 0",
        )
        conn.execute("SELECT count(*) FROM procrastinate_jobs WHERE priority >= 0")
        if not any("JIT:" in plan for plan in plans):
            pytest.skip("this server has no JIT (PostgreSQL built without LLVM)")
        plans.clear()
        claimed = conn.execute(
            "SELECT id FROM pgjobs.fetch_jobs(NULL, %s, 2, 1)", worker_id
        ).fetchall()
        assert len(claimed) == 2
        finished = conn.execute(
            "SELECT job FROM pgjobs.finish_jobs(%s, %s::procrastinate_job_status[],"
            " %s, %s)",
            [[claimed[0][0]], ["succeeded"], [False], [claimed[1][0]]],
        ).fetchall()
        assert sorted(finished) == sorted(claimed)
        inner = [plan for plan in plans if "procrastinate_jobs" in plan]
        assert any("UPDATE procrastinate_jobs" in plan for plan in inner)
        assert not [plan for plan in inner if "JIT:" in plan], inner


async def test_a_worker_starting_while_its_connection_is_cut_keeps_going(
    app: App, conn: psycopg.Connection[Any], db_url: str
) -> None:
    # The worker's first query (pruning stalled workers) waits behind a lock,
    # and its connection is cut there: it retries, then runs jobs.
    ran = asyncio.Event()

    @app.task(name="t.after_cut")
    async def after_cut() -> None:
        ran.set()

    app.enqueue(conn, after_cut)
    conn.commit()
    with psycopg.connect(db_url) as blocker:
        blocker.execute("LOCK TABLE procrastinate_workers IN ACCESS EXCLUSIVE MODE")
        async with app.open_async():
            worker = asyncio.create_task(
                app.run_worker_async(install_signal_handlers=False)
            )
            waiting: list[Any] = []
            for _ in range(200):
                waiting = conn.execute(
                    "SELECT pid FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    "   AND query LIKE '%procrastinate_prune_stalled_workers%'"
                ).fetchall()
                conn.commit()
                if waiting:
                    break
                await asyncio.sleep(0.05)
            assert len(waiting) == 1
            conn.execute("SELECT pg_terminate_backend(%s)", waiting[0])
            conn.commit()
            blocker.rollback()
            await asyncio.wait_for(ran.wait(), timeout=20)
            assert not worker.done()
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
    [(status, attempts)] = conn.execute(
        "SELECT status::text, attempts FROM procrastinate_jobs"
    ).fetchall()
    assert (status, attempts) == ("succeeded", 1)


async def test_middleware_order_and_per_job_logs_are_procrastinates(
    app: App, conn: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    # pgjobs' _process_job works out a task's middleware chain once per task
    # and builds log messages only when they are emitted: the chain, the
    # results and the records must be procrastinate's.
    from pgjobs.worker import middleware

    calls: list[str] = []

    async def outer(call_next: Any, context: Any, worker: Any) -> Any:
        calls.append(f"worker:{context.job.task_name}")
        return await call_next()

    @middleware.for_tasks(lambda task: task.name == "t.async")
    async def only_async(call_next: Any, context: Any, worker: Any) -> Any:
        calls.append(f"only_async:{context.job.task_name}")
        return await call_next()

    async def async_mw(call_next: Any, context: Any, worker: Any) -> Any:
        calls.append("task_mw:async")
        return await call_next()

    def sync_mw(call_next: Any, context: Any, worker: Any) -> Any:
        calls.append("task_mw:sync")
        return call_next()

    @app.task(name="t.async", task_middleware=[async_mw])
    async def async_task(n: int) -> int:
        calls.append("async")
        return n * 2

    @app.task(name="t.sync", task_middleware=[sync_mw])
    def sync_task(n: int) -> int:
        calls.append("sync")
        return n + 1

    app.enqueue(conn, async_task, {"n": 20})
    conn.commit()
    app.enqueue(conn, sync_task, {"n": 5})
    conn.commit()
    caplog.set_level(logging.INFO, logger="procrastinate.worker")
    async with app.open_async():
        await app.run_worker_async(
            concurrency=1,
            wait=False,
            install_signal_handlers=False,
            worker_middleware=[outer, only_async],
        )
    assert calls == [
        "worker:t.async",
        "only_async:t.async",
        "task_mw:async",
        "async",
        "worker:t.sync",
        "task_mw:sync",
        "sync",
    ]
    records = [
        (r.levelname, r.getMessage().split(" - ")[0].split(", lasted")[0], r.action)  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name.startswith("procrastinate.worker")
        and "job" in getattr(r, "action", "")
    ]
    ids = [
        row[0] for row in conn.execute("SELECT id FROM procrastinate_jobs ORDER BY id")
    ]
    assert records == [
        ("INFO", f"Starting job t.async[{ids[0]}](n=20)", "start_job"),
        (
            "INFO",
            f"Job t.async[{ids[0]}](n=20) ended with status: Success",
            "job_success",
        ),
        ("INFO", f"Starting job t.sync[{ids[1]}](n=5)", "start_job"),
        (
            "INFO",
            f"Job t.sync[{ids[1]}](n=5) ended with status: Success",
            "job_success",
        ),
    ]
    results = [
        r.getMessage().split(" - Result: ")[1]
        for r in caplog.records
        if getattr(r, "action", "") == "job_success"
    ]
    assert results == ["40", "6"]
