"""Enqueues notify only while a worker waits (pgjobs.worker.wakeups).

SQL level: what an enqueue sends to a LISTEN connection with no worker
waiting, with one waiting, under each ``pgjobs.notify`` mode; whether an
enqueueing transaction left open is seen. Process level: a real worker
(poll interval 60 s, so a poll cannot explain a quick start) takes the
waiting lock when idle, starts a notified job at once, lets the lock go
with its session when killed, and picks up the job of a transaction that
enqueued before it waited and committed after.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from faults import scenarios
from tests.support import wait_for

ANY_QUEUE = "procrastinate_any_queue_v1"
#: Sessions holding the waiting lock (1885825634, 1) in shared mode.
WAITERS = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
    " AND classid = 1885825634 AND objid = 1 AND objsubid = 2 AND granted"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


@pytest.fixture
def prepared(db_url: str) -> str:
    scenarios.prepare(db_url)
    return db_url


@pytest.fixture
def listener(prepared: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(prepared, autocommit=True) as conn:
        conn.execute(f"LISTEN {ANY_QUEUE}")
        yield conn


def _notified(listener: psycopg.Connection[Any]) -> int:
    return sum(1 for _ in listener.notifies(timeout=0.3))


def _enqueue(url: str, **options: str) -> None:
    with psycopg.connect(url) as conn:
        for name, value in options.items():
            conn.execute("SELECT set_config(%s, %s, true)", [name, value])
        conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, args)"
            " VALUES ('default', 'faults.work', '{\"n\": 0, \"ms\": 0}')"
        )


def _count(url: str, query: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query).fetchone()  # type: ignore[arg-type]
        return int(row[0]) if row else 0


@pytest.mark.timeout(60)
def test_an_enqueue_notifies_only_while_a_worker_waits(
    prepared: str, listener: psycopg.Connection[Any]
) -> None:
    _enqueue(prepared)
    assert _notified(listener) == 0
    with psycopg.connect(prepared, autocommit=True) as waiting:
        waiting.execute("SELECT pgjobs.wakeups_arm()")
        _enqueue(prepared)
        assert _notified(listener) == 1
        _enqueue(prepared, **{"pgjobs.notify": "never"})
        assert _notified(listener) == 0
        waiting.execute("SELECT pgjobs.wakeups_disarm()")
        _enqueue(prepared)
        assert _notified(listener) == 0
        waiting.execute("SELECT pgjobs.wakeups_arm()")
    # The session ended: its lock with it.
    _enqueue(prepared)
    assert _notified(listener) == 0
    _enqueue(prepared, **{"pgjobs.notify": "always"})
    assert _notified(listener) == 1


@pytest.mark.timeout(60)
def test_an_open_enqueueing_transaction_is_seen_until_it_ends(prepared: str) -> None:
    def settled() -> bool:
        with psycopg.connect(prepared, autocommit=True) as conn:
            row = conn.execute("SELECT pgjobs.wakeups_settled()").fetchone()
            return bool(row and row[0])

    assert settled()
    with psycopg.connect(prepared) as open_tx:
        open_tx.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, args)"
            " VALUES ('default', 'faults.work', '{}')"
        )
        assert not settled()
        open_tx.rollback()
    assert settled()
    # One that notified (a worker waited) holds nothing: it did not miss it.
    with (
        psycopg.connect(prepared, autocommit=True) as waiting,
        psycopg.connect(prepared) as open_tx,
    ):
        waiting.execute("SELECT pgjobs.wakeups_arm()")
        open_tx.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, args)"
            " VALUES ('default', 'faults.work', '{}')"
        )
        assert settled()
        open_tx.rollback()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_waiting_worker_is_notified_and_busy_ones_are_not_asked(
    prepared: str, listener: psycopg.Connection[Any]
) -> None:
    with scenarios.workers(
        prepared, 1, 4, PGJOBS_POLL_INTERVAL="60", PGJOBS_LOG_LEVEL="INFO"
    ) as group:
        wait_for(lambda: _count(prepared, WAITERS) == 1, 30, "the worker to wait")
        latencies = []
        for n in range(5):
            began = time.monotonic()
            ids = scenarios.enqueue(prepared, 1, start=n)
            scenarios.wait_finished(prepared, ids, timeout=20)
            latencies.append(time.monotonic() - began)
        assert max(latencies) < 2.0, latencies
        _notified(listener)  # those five
        # Busy: 4 slots, 40 jobs of 300 ms. The worker lets the lock go
        # once a claim fills its slots; enqueues meanwhile do not notify.
        ids = scenarios.enqueue(prepared, 40, ms=300, start=100)
        wait_for(lambda: _count(prepared, WAITERS) == 0, 10, "the worker to be busy")
        assert _notified(listener) == 1  # the 40: the worker was waiting
        _enqueue(prepared)
        busy_notifications = _notified(listener)
        scenarios.wait_finished(prepared, ids, timeout=60)
        wait_for(lambda: _count(prepared, WAITERS) == 1, 10, "the worker to wait again")
        group.procs[0].send_signal(signal.SIGKILL)
        group.procs[0].wait(10)
        wait_for(lambda: _count(prepared, WAITERS) == 0, 10, "the lock to go")
    assert busy_notifications == 0
    assert scenarios.unfinished(prepared, ids) == 0


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_job_committed_after_the_worker_began_waiting_is_not_missed(
    prepared: str,
) -> None:
    """The race: the enqueue looks for a waiting worker before the worker
    waits (no notification), and commits after the worker's last claim."""
    with psycopg.connect(prepared) as app_tx:
        row = app_tx.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, args)"
            " VALUES ('default', 'faults.work', '{\"n\": 1, \"ms\": 0}') RETURNING id"
        ).fetchone()
        assert row is not None
        with scenarios.workers(
            prepared, 1, 4, PGJOBS_POLL_INTERVAL="60", PGJOBS_LOG_LEVEL="INFO"
        ) as group:
            wait_for(lambda: _count(prepared, WAITERS) == 1, 30, "the worker to wait")
            time.sleep(0.5)  # it claimed meanwhile and found nothing
            app_tx.commit()
            began = time.monotonic()
            scenarios.wait_finished(prepared, [row[0]], timeout=20)
            latency = time.monotonic() - began
            assert group.error_lines() == []
    assert latency < 2.0
