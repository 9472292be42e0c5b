"""New jobs pushed to a waiting worker (pgjobs.worker.pushes).

SQL level: a target whose LISTEN session lives gets the first job of an
enqueueing transaction, inserted 'doing' for it, with the job row in the
notification; a rolled-back enqueue pushes nothing and leaves the target;
a target whose session is gone gets nothing; what is never pushed (locks,
queueing locks, scheduled jobs, paused queues, limited tasks, other
queues, ``pgjobs.push`` off, ``pgjobs.notify`` never, the rest of a bulk
insert). Process level: a real worker (poll interval 60 s) runs pushed jobs
(started_at equals deferred_at: no claim of its own came between), counts
their starts in the task stats, and a push whose notification is lost with
its LISTEN connection is put back by the heartbeat and run.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from faults import scenarios
from tests.support import wait_for

INSERT = (
    "INSERT INTO procrastinate_jobs (queue_name, task_name, args, lock,"
    " queueing_lock, scheduled_at)"
    ' VALUES (%(queue)s, %(task)s, \'{"n": 0, "ms": 0}\', %(lock)s,'
    " %(queueing_lock)s, %(scheduled_at)s) RETURNING id"
)


@pytest.fixture
def prepared(db_url: str) -> str:
    scenarios.prepare(db_url)
    return db_url


class Target:
    """A stand-in worker: a LISTEN session with its lock and channel, and
    a worker row."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.listen = psycopg.connect(url, autocommit=True)
        row = self.listen.execute("SELECT pgjobs.push_listen()").fetchone()
        assert row is not None
        self.pid = int(row[0])
        self.listen.execute(f'LISTEN "pgjobs_push_{self.pid}"')
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(
                "INSERT INTO procrastinate_workers DEFAULT VALUES RETURNING id"
            ).fetchone()
            assert row is not None
            self.worker_id = int(row[0])

    def arm(self, queues: list[str] | None = None) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(
                "SELECT pgjobs.push_arm(%s, %s, %s::varchar[])",
                [self.pid, self.worker_id, queues],
            )

    def disarm(self) -> str:
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute("SELECT pgjobs.push_disarm(%s)", [self.pid]).fetchone()
            assert row is not None
            return str(row[0])

    def pushed(self) -> list[dict[str, Any]]:
        return [json.loads(n.payload)["job"] for n in self.listen.notifies(timeout=0.3)]


@pytest.fixture
def target(prepared: str) -> Iterator[Target]:
    t = Target(prepared)
    yield t
    t.listen.close()


def _enqueue(conn: psycopg.Connection[Any], **values: Any) -> int:
    params = {
        "queue": "default",
        "task": "faults.work",
        "lock": None,
        "queueing_lock": None,
        "scheduled_at": None,
        **values,
    }
    row = conn.execute(INSERT, params).fetchone()
    assert row is not None
    return int(row[0])


def _job(url: str, job_id: int) -> tuple[Any, ...]:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT status, worker_id, started_at IS NOT NULL, deferred_at IS NOT NULL"
            " FROM procrastinate_jobs WHERE id = %s",
            [job_id],
        ).fetchone()
        assert row is not None
        return tuple(row)


def _targets(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pgjobs.push_targets").fetchone()
        return int(row[0]) if row else 0


@pytest.mark.timeout(60)
def test_a_live_target_gets_one_new_job_in_its_notification(
    prepared: str, target: Target
) -> None:
    target.arm()
    with psycopg.connect(prepared, autocommit=True) as conn:
        first = _enqueue(conn)
        second = _enqueue(conn)
    pushed = target.pushed()
    assert [job["id"] for job in pushed] == [first]
    assert pushed[0]["status"] == "doing"
    assert pushed[0]["task_name"] == "faults.work"
    assert pushed[0]["args"] == {"n": 0, "ms": 0}
    assert _job(prepared, first) == ("doing", target.worker_id, True, True)
    # One job per kept slot: the target row went with the push.
    assert _job(prepared, second) == ("todo", None, False, True)
    assert _targets(prepared) == 0
    assert target.disarm() == "pushed"


@pytest.mark.timeout(60)
def test_a_rolled_back_enqueue_pushes_nothing_and_keeps_the_target(
    prepared: str, target: Target
) -> None:
    target.arm()
    with (
        psycopg.connect(prepared) as app_tx,
        psycopg.connect(prepared, autocommit=True) as other,
    ):
        job_id = _enqueue(app_tx)
        # The push is open: the worker is told to wait for it, and a
        # concurrent enqueue does not wait for it either (SKIP LOCKED).
        assert target.disarm() == "pending"
        other_id = _enqueue(other)
        assert _job(prepared, other_id) == ("todo", None, False, True)
        app_tx.rollback()
    assert _job_count(prepared, job_id) == 0
    assert target.pushed() == []
    assert _targets(prepared) == 1
    assert target.disarm() == "released"
    assert _targets(prepared) == 0


def _job_count(url: str, job_id: int) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE id = %s", [job_id]
        ).fetchone()
        return int(row[0]) if row else 0


@pytest.mark.timeout(60)
def test_a_target_whose_listen_session_is_gone_gets_nothing(
    prepared: str, target: Target
) -> None:
    target.arm()
    target.listen.close()
    with psycopg.connect(prepared, autocommit=True) as conn:
        job_id = _enqueue(conn)
    assert _job(prepared, job_id) == ("todo", None, False, True)
    assert _targets(prepared) == 0  # the dead target's row is gone


@pytest.mark.timeout(60)
def test_what_is_never_pushed(prepared: str, target: Target) -> None:
    with psycopg.connect(prepared, autocommit=True) as conn:
        conn.execute("INSERT INTO pgjobs.paused_queues (queue_name) VALUES ('paused')")
        conn.execute(
            "SELECT pgjobs.set_task_limit('limited.task', 'task', 'concurrency', NULL, 1, NULL)"
        )
        cases: list[dict[str, Any]] = [
            {"lock": "l1"},
            {"queueing_lock": "q1"},
            {"scheduled_at": "2999-01-01T00:00:00Z"},
            {"queue": "paused"},
            {"task": "limited.task"},
            {"queue": "elsewhere"},
        ]
        target.arm(["default", "paused"])
        for values in cases:
            job_id = _enqueue(conn, **values)
            assert _job(prepared, job_id)[0] == "todo", values
        for name, value in (("pgjobs.push", "off"), ("pgjobs.notify", "never")):
            with conn.transaction():
                conn.execute("SELECT set_config(%s, %s, true)", [name, value])
                job_id = _enqueue(conn)
            assert _job(prepared, job_id)[0] == "todo", name
        assert target.pushed() == []
        assert _targets(prepared) == 1
        # A bulk insert: its first job goes, the others are notified.
        rows = conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, args)"
            " SELECT 'default', 'faults.work', '{}' FROM generate_series(1, 3)"
            " RETURNING id, status"
        ).fetchall()
    assert sorted(status for _, status in rows) == ["doing", "todo", "todo"]
    assert [job["id"] for job in target.pushed()] == [
        job_id for job_id, status in rows if status == "doing"
    ]


def _scalar(url: str, query: str, *params: Any) -> Any:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
        return row[0] if row else None


def _pushed_runs(url: str, ids: list[int]) -> int:
    """Jobs that started in their enqueueing transaction (a push)."""
    return int(
        _scalar(
            url,
            "SELECT count(*) FROM procrastinate_jobs WHERE id = ANY(%s)"
            " AND status = 'succeeded'"
            " AND (SELECT at FROM procrastinate_events e WHERE e.job_id = procrastinate_jobs.id"
            "        AND e.type = 'started' ORDER BY e.at LIMIT 1) = deferred_at",
            ids,
        )
    )


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_waiting_worker_runs_pushed_jobs_and_a_lost_push_is_not_lost(
    prepared: str,
) -> None:
    with scenarios.workers(
        prepared, 1, 4, PGJOBS_POLL_INTERVAL="60", PGJOBS_LOG_LEVEL="INFO"
    ) as group:
        wait_for(lambda: _targets(prepared) == 1, 30, "the worker to keep a slot")
        ids: list[int] = []
        for n in range(5):
            ids += scenarios.enqueue(prepared, 1, start=n)
            scenarios.wait_finished(prepared, ids, timeout=20)
            wait_for(lambda: _targets(prepared) == 1, 10, "the slot kept again")
        assert _pushed_runs(prepared, ids) == 5
        started = _scalar(
            prepared,
            "SELECT coalesce(sum(started), 0) FROM pgjobs.task_rollups"
            " WHERE task_name = 'faults.work'",
        )
        assert started == 5
        # Lost: the push commits after its LISTEN session was terminated.
        listener = _scalar(prepared, "SELECT listener FROM pgjobs.push_targets")
        with psycopg.connect(prepared) as app_tx:
            row = app_tx.execute(
                "INSERT INTO procrastinate_jobs (queue_name, task_name, args)"
                " VALUES ('default', 'faults.work', '{\"n\": 99, \"ms\": 0}')"
                " RETURNING id, status"
            ).fetchone()
            assert row is not None and row[1] == "doing"
            lost = int(row[0])
            _scalar(prepared, "SELECT pg_terminate_backend(%s)", listener)
            app_tx.commit()
        scenarios.wait_finished(prepared, [lost], timeout=60)
        assert (
            _scalar(
                prepared, "SELECT status FROM procrastinate_jobs WHERE id = %s", lost
            )
            == "succeeded"
        )
        assert (
            _scalar(prepared, "SELECT count(*) FROM fault_runs WHERE job_id = %s", lost)
            == 1
        )
        assert "marked running on this worker that it does not run" in group.log_text()
        # Killed: its session's lock goes, and no job is pushed to it.
        wait_for(lambda: _targets(prepared) == 1, 30, "the slot kept again")
        group.procs[0].send_signal(signal.SIGKILL)
        group.procs[0].wait(10)
    with psycopg.connect(prepared, autocommit=True) as conn:
        orphan = _enqueue(conn)
    assert _job(prepared, orphan) == ("todo", None, False, True)
    assert _targets(prepared) == 0


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_stopping_worker_withdraws_its_slot(prepared: str) -> None:
    with scenarios.workers(
        prepared, 1, 4, PGJOBS_POLL_INTERVAL="60", PGJOBS_LOG_LEVEL="INFO"
    ) as group:
        wait_for(lambda: _targets(prepared) == 1, 30, "the worker to keep a slot")
        group.procs[0].send_signal(signal.SIGTERM)
        assert group.procs[0].wait(30) == 0
        assert _targets(prepared) == 0
        assert group.error_lines() == []


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_worker_stopping_while_its_slot_is_being_kept_waits_for_no_push(
    prepared: str,
) -> None:
    # The keeping of the slot (pgjobs.push_arm) is held up: a SHARE lock on
    # the table lets the stopping worker's disarm read it, but not the arm
    # insert. The stop waits for the arm, then gives the slot back; it does
    # not take the missing row for a push on its way (2 s of waiting for
    # nothing, and the row left behind once the arm commits).
    blocker = psycopg.connect(prepared)
    try:
        blocker.execute("LOCK TABLE pgjobs.push_targets IN SHARE MODE")
        with scenarios.workers(
            prepared, 1, 4, PGJOBS_POLL_INTERVAL="60", PGJOBS_LOG_LEVEL="INFO"
        ) as group:
            wait_for(
                lambda: (
                    _scalar(
                        prepared,
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type"
                        " = 'Lock' AND query LIKE '%%push_arm%%' AND pid <> %s",
                        blocker.info.backend_pid,
                    )
                    == 1
                ),
                30,
                "the worker's arm to wait for the lock",
            )
            began = time.monotonic()
            group.procs[0].send_signal(signal.SIGTERM)
            time.sleep(0.5)
            blocker.rollback()  # the arm goes through now
            assert group.procs[0].wait(30) == 0
            stopped_in = time.monotonic() - began
            assert group.error_lines() == []
    finally:
        blocker.close()
    assert stopped_in < 1.8, f"the stop took {stopped_in:.2f} s"
    assert _targets(prepared) == 0
