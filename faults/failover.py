"""Failover under load: the primary crashes, its standby is promoted.

Two ``pgjobs worker`` processes and an enqueuer all use the multi-host URL
``postgresql://...@p:5432,s:5433/db?target_session_attrs=read-write``. Once
the load runs, the standby is cut off its primary for ``lag_window``
seconds (a replication lag window), the primary is stopped in ``immediate``
mode (a crash) and the standby promoted (``pg_ctl promote``); the load goes
on against the new primary, then every job acknowledged to the enqueuer is
followed to its end.

- With **synchronous** replication a commit returns only once the standby
  has it: nothing acknowledged may be missing (counted as ``lost``).
- With **asynchronous** replication the commits of the lag window are gone:
  the jobs acknowledged but missing from the new primary are counted apart
  (``lag_window_lost``), as documented. Everything else must hold as in
  every scenario: nothing lost among the jobs that survived, no job finished
  without running (an outcome landing on a reused id), nothing ``stuck``.

``health_truthful``: ``pgjobs health`` on the standby while the load runs
reports no stalled job (the workers are alive), and on the new primary once
all is done reports nothing.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import psycopg

from faults import scenarios
from faults.app import app
from faults.replication import Replication
from pgjobs.db import connections

DBNAME = "faults"


class _Enqueuer:
    """Enqueues ``faults.work`` jobs in small batches through the failover
    URL, each batch its own transaction, and keeps the ``n`` of every job
    whose commit was acknowledged; a failed batch is not retried (its jobs
    may or may not exist) and its numbers are never used again."""

    def __init__(self, url: str, rate: float, ms: int) -> None:
        self.url, self.rate, self.ms = url, rate, ms
        self.acknowledged: list[int] = []
        self.failed_batches = 0
        self._n = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        batch = 5
        conn: psycopg.Connection[Any] | None = None
        while not self._stop.is_set():
            numbers = list(range(self._n, self._n + batch))
            self._n += batch
            try:
                if conn is None or conn.closed:
                    conn = connections.connect(self.url, autocommit=True)
                app.enqueue_many(
                    conn, "faults.work", [{"n": n, "ms": self.ms} for n in numbers]
                )
                self.acknowledged += numbers
            except Exception:
                self.failed_batches += 1
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.2)
                continue
            time.sleep(batch / self.rate)
        if conn is not None:
            conn.close()

    def stop(self) -> list[int]:
        self._stop.set()
        self._thread.join()
        return self.acknowledged


def _health(url: str) -> list[dict[str, Any]]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET pgjobs.stalled_after = '15 seconds'")
        rows = conn.execute('SELECT "check", subject, detail FROM pgjobs.health')
        return [dict(zip(("check", "subject", "detail"), r, strict=True)) for r in rows]


def promote_under_load(
    synchronous: bool,
    load_before: float = 3.0,
    load_after: float = 4.0,
    rate: float = 200.0,
    lag_window: float = 1.0,
) -> scenarios.Result:
    kind = "synchronous" if synchronous else "asynchronous"
    began = time.monotonic()
    pair = Replication(synchronous=synchronous)
    try:
        pair.create_database(DBNAME)
        scenarios.prepare(pair.primary_url(DBNAME))
        pair.wait_replayed()
        url = pair.failover_url(DBNAME)
        result = scenarios.Result(f"failover, {kind} replication", 0)
        lies: list[str] = []
        with scenarios.workers(url, 2, 10, PGJOBS_STALLED_AFTER="15") as group:
            _wait_registered(pair.primary_url(DBNAME), 2)
            enqueuer = _Enqueuer(url, rate, ms=20)
            deadline = time.monotonic() + load_before
            while time.monotonic() < deadline:
                for row in _health(pair.standby_url(DBNAME)):
                    if row["check"] in ("stalled_job", "orphaned_job"):
                        lies.append(f"standby under load: {row}")
                time.sleep(0.5)
            # The last lag_window seconds of the primary's commits never
            # reach the standby (cut off from it), then the primary crashes.
            pair.hold_wal()
            time.sleep(lag_window)
            pair.stop_primary("immediate")
            pair.release_wal()
            pair.promote()
            promoted = time.monotonic()
            before_promotion = len(enqueuer.acknowledged)
            time.sleep(load_after)
            acknowledged = enqueuer.stop()
            new_primary = pair.standby_url(DBNAME)
            present = _present(new_primary, acknowledged)
            ids = sorted(present.values())
            scenarios.wait_finished(new_primary, ids, 300, during=group.check_alive)
            settled = time.monotonic() - promoted
        missing = len(acknowledged) - len(present)
        result.jobs = len(acknowledged)
        foreign = _runs_of_lost_jobs(new_primary)
        if foreign:
            result.notes.append(
                f"{foreign} run(s) of jobs lost in the lag window recorded under"
                " their id, now another job's (set apart)"
            )
        scenarios.count(new_primary, result, ids, group.killed)
        if synchronous:
            result.lost += missing
        else:
            result.lag_window_lost = missing
        # Jobs enqueued after the promotion ran, if at all, on the new primary:
        # one 'succeeded' without a completed run got another job's outcome.
        # (Before it, a run's own rows may have gone with the lag window.)
        later = [present[n] for n in acknowledged[before_promotion:] if n in present]
        unrun = _succeeded_without_running(new_primary, later)
        result.lost += unrun
        after = _health(new_primary)
        lies += [f"after: {row}" for row in after]
        result.health_truthful = not lies
        result.notes.append(
            f"{enqueuer.failed_batches} enqueue batch(es) failed during the"
            f" failover (not acknowledged); all done {settled:.1f} s after"
            f" the promotion; {unrun} job(s) enqueued after it succeeded without"
            " running"
        )
        log = group.log_text()
        rewritten = sum(
            int(m) for m in re.findall(r"wrote again the outcome of (\d+) job", log)
        )
        released = sum(
            int(m) for m in re.findall(r"put back (\d+) job\(s\) marked running", log)
        )
        result.notes.append(
            f"workers wrote {rewritten} lost outcome(s) again and put back"
            f" {released} job(s) they did not run"
        )
        result.notes += lies[:3]
        return scenarios._finish(result, new_primary, ids, group, began, counted=False)
    finally:
        pair.close()


def _wait_registered(url: str, workers: int, timeout: float = 120) -> None:
    """Until ``workers`` workers are registered (all started)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            row = conn.execute("SELECT count(*) FROM procrastinate_workers").fetchone()
            if row is not None and row[0] >= workers:
                return
            if time.monotonic() > deadline:
                raise TimeoutError("the workers did not start")
            time.sleep(0.1)


def _runs_of_lost_jobs(url: str) -> int:
    """A job lost in the lag window whose worker still ran it after the
    failover recorded its run under its id, which the new primary gave to
    another job: set those runs apart (``fault_runs`` keeps ``n``)."""
    with psycopg.connect(url) as conn:
        cursor = conn.execute(
            "DELETE FROM fault_runs AS run USING procrastinate_jobs AS job"
            " WHERE run.job_id = job.id AND (job.args->>'n')::int <> run.n"
        )
        return cursor.rowcount


def _present(url: str, acknowledged: list[int]) -> dict[int, int]:
    """``n`` -> job id, for the acknowledged jobs the database has."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT (args->>'n')::int, id FROM procrastinate_jobs"
            " WHERE task_name = 'faults.work' AND (args->>'n')::int = ANY(%s)",
            [acknowledged],
        ).fetchall()
    return dict(rows)


def _succeeded_without_running(url: str, ids: list[int]) -> int:
    """Jobs 'succeeded' with no completed run of their ``n``: an outcome
    that landed on another job's id."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM procrastinate_jobs AS job"
            " WHERE job.id = ANY(%s) AND job.status = 'succeeded'"
            "   AND NOT EXISTS (SELECT 1 FROM fault_runs AS run"
            "                    WHERE run.n = (job.args->>'n')::int"
            "                      AND run.ended_at IS NOT NULL)",
            [ids],
        ).fetchone()
    return int(row[0]) if row else 0
