"""The fault scenarios: real worker processes, real faults, counts from SQL.

Every scenario enqueues ``faults.work`` jobs, runs ``pgjobs worker``
processes against them while it breaks something, waits until every job is
final, and returns a :class:`Result` computed from ``procrastinate_jobs``,
``pgjobs.dead_letters`` and ``fault_runs`` (one row per execution).
"""

from __future__ import annotations

import math
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from faults.app import SETUP_SQL, app
from pgjobs.db import connections, schema

ROOT = Path(__file__).resolve().parent.parent

#: Worker settings that make a killed worker's jobs come back within seconds.
FAST_RESCUE = {
    "PGJOBS_HEARTBEAT_INTERVAL": "0.5",
    "PGJOBS_STALLED_AFTER": "3",
    "PGJOBS_STALLED_CHECK_INTERVAL": "0.5",
    "PGJOBS_SHUTDOWN_GRACE": "10",
    "PGJOBS_LOG_LEVEL": "WARNING",
}


@dataclass
class Result:
    scenario: str
    jobs: int
    succeeded: int = 0
    dead_lettered: int = 0
    #: Jobs neither succeeded nor dead-lettered (must be 0).
    lost: int = 0
    #: Runs beyond the first, per job, and how many of those followed a run
    #: that was interrupted (killed or cut off before it ended).
    duplicated_runs: int = 0
    interrupted_runs: int = 0
    #: Duplicates not explained by an interrupted run (must be 0).
    unexplained_duplicates: int = 0
    #: Runs of a job under an attempt number another of its runs already had:
    #: a run the attempt count missed (must be 0).
    uncounted_runs: int = 0
    lock_violations: int = 0
    priority_violations: int = 0
    #: Tracebacks / ERROR lines in worker logs, and workers that exited.
    errors: int = 0
    #: ``doing`` rows of these jobs that no live worker runs, after the run
    #: (must be 0).
    stuck: int = 0
    #: Whether ``pgjobs health`` said what the facts were during and after the
    #: run (None: not checked by this scenario; False fails the scenario).
    health_truthful: bool | None = None
    #: Jobs acknowledged to the enqueuer but gone after a failover with
    #: asynchronous replication (None: not such a scenario). Counted apart
    #: from ``lost``: the documented price of asynchronous replication.
    lag_window_lost: int | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.unexplained_duplicates == 0
            and self.uncounted_runs == 0
            and self.lock_violations == 0
            and self.priority_violations == 0
            and self.errors == 0
            and self.stuck == 0
            and self.health_truthful is not False
        )


# -- database set-up and checks ---------------------------------------------


def prepare(url: str) -> None:
    schema.upgrade(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SETUP_SQL)  # type: ignore[arg-type]


def enqueue(
    url: str,
    count: int,
    *,
    ms: int = 0,
    start: int = 0,
    **options: Any,
) -> list[int]:
    with connections.connect(url) as conn:
        ids = app.enqueue_many(
            conn,
            "faults.work",
            [{"n": n, "ms": ms} for n in range(start, start + count)],
            **options,
        )
        conn.commit()
    return [i for i in ids if i is not None]


def _scalar(conn: psycopg.Connection[Any], query: str, *params: Any) -> Any:
    row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
    return row[0] if row else None


def wait_ready(url: str, count: int, timeout: float = 120) -> None:
    """Until ``count`` workers are registered: a rolling deploy stops the
    next worker only once the new one is up (one still starting has no
    signal handler yet: SIGTERM would just kill it), and an outage starts
    once every worker runs (a worker that finds no server at its start
    exits with one line: see ``connections.wait_for_free_slot``)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            row = conn.execute("SELECT count(*) FROM procrastinate_workers").fetchone()
            if row is not None and row[0] >= count:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count} workers not registered in {timeout} s")
            time.sleep(0.1)


def unfinished(url: str, ids: Sequence[int]) -> int:
    with psycopg.connect(url) as conn:
        return int(
            _scalar(
                conn,
                "SELECT count(*) FROM procrastinate_jobs"
                " WHERE id = ANY(%s) AND status IN ('todo', 'doing')",
                list(ids),
            )
        )


def wait_finished(
    url: str,
    ids: Sequence[int],
    timeout: float,
    during: Callable[[], None] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while unfinished(url, ids):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{unfinished(url, ids)} job(s) still unfinished")
        if during is not None:
            during()
        time.sleep(0.2)


def count(
    url: str, result: Result, ids: Sequence[int], killed: Sequence[int] = ()
) -> Result:
    """Fill ``result`` from the database for the jobs ``ids``.

    A run is interrupted when it never ended or its worker (pid in
    ``killed``) was killed before the outcome was stored; only duplicates
    of runs that were not interrupted are unexplained.
    """
    with psycopg.connect(url) as conn:
        result.succeeded = _scalar(
            conn,
            "SELECT count(*) FROM procrastinate_jobs WHERE id = ANY(%s)"
            " AND status = 'succeeded'",
            list(ids),
        )
        result.dead_lettered = _scalar(
            conn,
            "SELECT count(DISTINCT job_id) FROM pgjobs.dead_letters"
            " WHERE job_id = ANY(%s)",
            list(ids),
        )
        result.lost = len(ids) - result.succeeded - result.dead_lettered
        if result.lag_window_lost is not None:
            result.lost -= result.lag_window_lost
        result.stuck = stuck(conn, ids)
        runs = conn.execute(
            "SELECT coalesce(sum(n_runs - 1), 0),"
            "       coalesce(sum(n_interrupted) FILTER (WHERE n_runs > 1), 0),"
            "       coalesce(sum(greatest(n_clean - 1, 0)), 0)"
            "  FROM (SELECT job_id, count(*) AS n_runs,"
            "               count(*) FILTER (WHERE ended_at IS NULL"
            "                                   OR pid = ANY(%s)) AS n_interrupted,"
            "               count(*) FILTER (WHERE ended_at IS NOT NULL"
            "                                  AND pid <> ALL(%s)) AS n_clean"
            "          FROM fault_runs WHERE job_id = ANY(%s) GROUP BY job_id) AS r",
            [list(killed), list(killed), list(ids)],
        ).fetchone()
        assert runs is not None
        result.duplicated_runs, result.interrupted_runs, unexplained = runs
        result.unexplained_duplicates = int(unexplained)
        result.uncounted_runs = _scalar(
            conn,
            "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n"
            "  FROM fault_runs WHERE job_id = ANY(%s)"
            " GROUP BY job_id, attempt) AS r",
            list(ids),
        )
        # Two completed runs of jobs sharing a lock must never overlap.
        result.lock_violations = _scalar(
            conn,
            "SELECT count(*) FROM fault_runs AS a JOIN fault_runs AS b"
            "  ON a.lock = b.lock AND a.id < b.id"
            " WHERE a.job_id = ANY(%s) AND b.job_id = ANY(%s)"
            "   AND a.ended_at IS NOT NULL AND b.ended_at IS NOT NULL"
            "   AND a.started_at < b.ended_at AND b.started_at < a.ended_at",
            list(ids),
            list(ids),
        )
    return result


def stuck(conn: psycopg.Connection[Any], ids: Sequence[int]) -> int:
    """``doing`` rows among ``ids`` that no live worker runs: a worker that
    stopped or died left them, or a live worker holds them without running
    them (called after the run, once every worker of the scenario is gone or
    idle, so every ``doing`` row counts)."""
    return int(
        _scalar(
            conn,
            "SELECT count(*) FROM procrastinate_jobs"
            " WHERE id = ANY(%s) AND status = 'doing'",
            list(ids),
        )
    )


def priority_violations(url: str, ids: Sequence[int], slack: float = 0.5) -> int:
    """Jobs without a lock that started more than ``slack`` s after a job of
    lower priority of the same queue (all were ready from the start)."""
    with psycopg.connect(url) as conn:
        return int(
            _scalar(
                conn,
                "WITH first_run AS ("
                "  SELECT job_id, priority, min(started_at) AS started_at"
                "    FROM fault_runs WHERE job_id = ANY(%s) AND lock IS NULL"
                "   GROUP BY job_id, priority),"
                " by_priority AS ("
                "  SELECT priority, min(started_at) AS first_start,"
                "         max(started_at) AS last_start"
                "    FROM first_run GROUP BY priority)"
                " SELECT count(*) FROM by_priority AS hi JOIN by_priority AS lo"
                "   ON hi.priority > lo.priority"
                " WHERE hi.last_start > lo.first_start + %s * interval '1 second'",
                list(ids),
                slack,
            )
        )


# -- worker processes --------------------------------------------------------


class Workers:
    """``pgjobs worker`` processes on one database, their logs kept in files."""

    def __init__(
        self,
        url: str,
        count: int,
        concurrency: int,
        app_path: str = "faults.app.app",
        **env: str,
    ) -> None:
        self.url = url
        self.concurrency = concurrency
        self.app_path = app_path
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PGJOBS_")}
        self.env.update(FAST_RESCUE)
        self.env.update(env)
        self.env["PGJOBS_DATABASE_URL"] = url
        self.env["PYTHONPATH"] = str(ROOT)
        self.logs = Path(tempfile.mkdtemp(prefix="pgjobs-faults-logs-"))
        self.procs: list[subprocess.Popen[bytes]] = []
        self.exited: list[int] = []  # exit codes of workers that stopped on their own
        self.killed: list[int] = []  # pids this suite SIGKILLed
        self._started = 0
        for _ in range(count):
            self.procs.append(self._spawn())

    def _spawn(self) -> subprocess.Popen[bytes]:
        self._started += 1
        with open(self.logs / f"worker-{self._started}.log", "wb") as log:
            # The child keeps its own copy of the file descriptor.
            return subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pgjobs",
                    "worker",
                    "--app",
                    self.app_path,
                    "--concurrency",
                    str(self.concurrency),
                ],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill_and_restart(self, index: int) -> None:
        proc = self.procs[index]
        self.killed.append(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.procs[index] = self._spawn()

    def terminate_and_restart(self, index: int, timeout: float = 60) -> float:
        """SIGTERM one worker (a deploy), wait for it to exit, start its
        successor; returns the seconds it took to exit. A worker that exits
        non-zero (or must be killed) counts in ``exited``."""
        proc = self.procs[index]
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        took = time.monotonic() - began
        if proc.returncode != 0:
            self.exited.append(proc.returncode)
        self.procs[index] = self._spawn()
        return took

    def check_alive(self) -> None:
        for index, proc in enumerate(self.procs):
            if proc.poll() is not None:
                self.exited.append(proc.returncode)
                self.procs[index] = self._spawn()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def log_text(self) -> str:
        return "\n".join(
            path.read_text(errors="replace") for path in sorted(self.logs.glob("*.log"))
        )

    def error_lines(self) -> list[str]:
        return [
            line
            for line in self.log_text().splitlines()
            if "Traceback" in line or " ERROR " in line
        ]


@contextmanager
def workers(
    url: str,
    count: int,
    concurrency: int,
    app_path: str = "faults.app.app",
    **env: str,
) -> Iterator[Workers]:
    group = Workers(url, count, concurrency, app_path, **env)
    try:
        yield group
    finally:
        group.stop()


def _finish(
    result: Result,
    url: str,
    ids: Sequence[int],
    group: Workers,
    began: float,
    counted: bool = True,
) -> Result:
    if counted:
        count(url, result, ids, group.killed)
    errors = group.error_lines()
    result.errors += len(errors) + len(group.exited)
    if errors:
        result.notes.append(f"first error line: {errors[0][:200]}")
    if group.exited:
        result.notes.append(f"workers exited on their own: {group.exited}")
    result.seconds = round(time.monotonic() - began, 1)
    return result


# -- the scenarios -------------------------------------------------------------


def worker_crashes(
    url: str,
    jobs: int = 10_000,
    kill_every: float = 2.0,
    workers_n: int = 3,
    prefetch: int = 0,
) -> Result:
    """Three workers drain the jobs while one is SIGKILLed every few seconds.

    With ``prefetch``, each worker also holds that many claimed jobs it has
    not started: a killed worker's must go back to the queue unattempted,
    and only the jobs it was running may run twice.
    """
    prepare(url)
    # Enough work for the drain to outlast three kill intervals (20 ms a job
    # at full size; small runs get longer jobs, or they end before a kill).
    slots = workers_n * 10
    ms = max(20, math.ceil(3 * kill_every * slots * 1000 / max(1, jobs)))
    ids = enqueue(url, jobs, ms=ms)
    name = f"worker SIGKILL every {kill_every:.0f} s"
    if prefetch:
        name += f", prefetch {prefetch}"
    result = Result(name, len(ids))
    began = time.monotonic()
    kills = 0
    env = {"PGJOBS_PREFETCH": str(prefetch)} if prefetch else {}
    with workers(url, workers_n, 10, **env) as group:
        wait_ready(url, workers_n)  # the kill clock starts with the work
        next_kill = time.monotonic() + kill_every

        def kill_now_and_then() -> None:
            nonlocal next_kill, kills
            if time.monotonic() >= next_kill:
                group.kill_and_restart(random.randrange(workers_n))
                kills += 1
                next_kill = time.monotonic() + kill_every
            group.check_alive()

        wait_finished(url, ids, timeout=600, during=kill_now_and_then)
    result.notes.append(f"{kills} kills")
    if prefetch:
        result.notes.append(f"{put_back_unstarted(url, ids)} jobs put back unstarted")
    return _finish(result, url, ids, group, began)


def put_back_unstarted(url: str, ids: Sequence[int]) -> int:
    """Times a job went back to the queue from 'doing' without having started
    (no 'started' event since it was last queued): prefetched jobs of a
    stopped or killed worker."""
    with psycopg.connect(url) as conn:
        return int(
            _scalar(
                conn,
                "SELECT count(*) FROM procrastinate_events AS back"
                " WHERE back.job_id = ANY(%s) AND back.type = 'deferred_for_retry'"
                "   AND NOT EXISTS ("
                "       SELECT 1 FROM procrastinate_events AS started"
                "        WHERE started.job_id = back.job_id"
                "          AND started.type = 'started' AND started.id < back.id"
                "          AND started.id > coalesce(("
                "              SELECT max(queued.id)"
                "                FROM procrastinate_events AS queued"
                "               WHERE queued.job_id = back.job_id"
                "                 AND queued.type IN"
                "                     ('deferred', 'deferred_for_retry', 'retried')"
                "                 AND queued.id < back.id), 0))",
                list(ids),
            )
        )


def database_restart(cluster: Any, jobs: int = 3_000, down: float = 3.0) -> Result:
    """The database is stopped mid-run and started again ``down`` s later."""
    url = cluster.url
    prepare(url)
    ids = enqueue(url, jobs, ms=5)
    result = Result("database restart", len(ids))
    began = time.monotonic()
    # No worker dies here: a long stall threshold keeps a worker that the
    # outage (or a loaded machine) kept from beating from being taken for dead.
    with workers(url, 2, 10, PGJOBS_STALLED_AFTER="15") as group:
        wait_ready(url, 2)
        while unfinished(url, ids) > jobs * 0.7:
            time.sleep(0.05)
        cluster.stop("fast")
        try:
            enqueue(url, 1, start=jobs)
            result.notes.append("enqueue during the outage did NOT fail")
            result.errors += 1
        except Exception as exc:
            first = str(exc).splitlines()[0]
            result.notes.append(f"enqueue during outage: {type(exc).__name__}: {first}")
            if type(exc).__module__.split(".")[0] != "pgjobs":
                result.errors += 1
        time.sleep(down)
        cluster.start()
        ids += enqueue(url, 10, start=jobs)
        result.jobs = len(ids)
        wait_finished(url, ids, timeout=300, during=group.check_alive)
        log = group.log_text()
    for needle in ("database unavailable", "database reachable again"):
        if needle not in log:
            result.notes.append(f"missing log line: {needle!r}")
            result.errors += 1
    return _finish(result, url, ids, group, began)


def connections_cut(url: str, jobs: int = 3_000, cuts: int = 10) -> Result:
    """Every worker connection is terminated, again and again, mid-drain."""
    prepare(url)
    ids = enqueue(url, jobs, ms=50)
    result = Result(f"connections terminated x{cuts}", len(ids))
    began = time.monotonic()
    terminated = 0
    with (
        workers(url, 2, 10, PGJOBS_STALLED_AFTER="15") as group,
        psycopg.connect(url, autocommit=True) as admin,
    ):
        # Cut only once both workers are registered (past their start-up
        # checks: one cut there exits with one line, by design) and
        # draining (start-up can be slow).
        wait_ready(url, 2)
        deadline = time.monotonic() + 60
        while unfinished(url, ids) == len(ids) and time.monotonic() < deadline:
            time.sleep(0.05)
        for _ in range(cuts):
            terminated += _scalar(
                admin,
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                "   AND backend_type = 'client backend'",
            )
            time.sleep(0.3)
            group.check_alive()
        left = unfinished(url, ids)
        wait_finished(url, ids, timeout=300, during=group.check_alive)
    result.notes.append(
        f"{terminated} connections terminated; {left} jobs still unfinished after"
        " the last cut"
    )
    return _finish(result, url, ids, group, began)


def concurrency(
    url: str, jobs: int = 50_000, workers_n: int = 4, per_worker: int = 20
) -> Result:
    """Four workers x 20 on jobs with locks, queueing locks and priorities."""
    prepare(url)
    ids: list[int] = []
    # Per priority: two thirds without a lock, one third over 50 lock keys.
    n = 0
    per_priority = max(3, jobs // 3)
    for priority in (0, 5, 10):
        free = per_priority * 2 // 3
        ids += enqueue(url, free, ms=1, start=n, priority=priority)
        n += free
        locked = per_priority - free
        for key in range(50):
            share = locked // 50 + (1 if key < locked % 50 else 0)
            if share:
                ids += enqueue(
                    url, share, ms=1, start=n, priority=priority, lock=f"account-{key}"
                )
                n += share
    # Queueing locks: one waiting job per key; the duplicate is refused.
    duplicates_refused = 0
    for key in range(20):
        ids += enqueue(url, 1, start=n, queueing_lock=f"report-{key}")
        n += 1
        try:
            enqueue(url, 1, start=n, queueing_lock=f"report-{key}")
        except Exception as exc:
            if type(exc).__name__ == "AlreadyEnqueued":
                duplicates_refused += 1
    result = Result(f"{workers_n} workers x {per_worker}, locks + priorities", len(ids))
    result.notes.append(f"{duplicates_refused}/20 queueing-lock duplicates refused")
    if duplicates_refused != 20:
        result.errors += 20 - duplicates_refused
    began = time.monotonic()
    with workers(url, workers_n, per_worker) as group:
        wait_finished(url, ids, timeout=900, during=group.check_alive)
    result.priority_violations = priority_violations(url, ids)
    return _finish(result, url, ids, group, began)


def _steady_state_wal(url: str) -> str:
    """Give the server the WAL segments a server running at this load has.

    A fresh cluster creates each 16 MB WAL segment when it first needs it:
    it zero-fills and fsyncs the file while holding the WAL write lock, so
    every commit waits 30-100 ms, every ~7 s at 750 jobs/s, until its first
    checkpoints have recycled enough old segments (a running server reuses
    them and never pays this). Measured in 6-min runs on the suite's cluster:
    those stalls alone put the load's p99 at 20-65 ms against an idle 5.5 ms.
    Switching segments (one a max_wal_size's worth) and a checkpoint leave
    that many segments ready to reuse.
    """
    with psycopg.connect(url, autocommit=True) as conn:
        segments = _scalar(
            conn,
            "SELECT (pg_size_bytes(current_setting('max_wal_size'))"
            "        / pg_size_bytes(current_setting('wal_segment_size')))::int",
        )
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS fault_wal_warm_up (x int)")
            for _ in range(segments):
                conn.execute("INSERT INTO fault_wal_warm_up VALUES (1)")
                conn.execute("SELECT pg_switch_wal()")
            conn.execute("DROP TABLE fault_wal_warm_up")
            conn.execute("CHECKPOINT")
            ready = _scalar(conn, "SELECT count(*) FROM pg_ls_waldir()")
        except psycopg.errors.InsufficientPrivilege:
            return "WAL not warmed up (needs a superuser URL): expect segment stalls"
    return f"{ready} WAL segments ready before the load (steady-state server)"


def _idle_latency_p99(url: str, count: int = 1000) -> float:
    """Enqueue→start p99 (ms) with the worker idle: one job every 20 ms
    (1,000 of them: a p99 over 200 is the second-worst of two values)."""
    with connections.connect(url) as conn:
        conn.autocommit = True
        start = 10_000_000
        # Wait until the worker is up: its first job has run.
        warm_up = app.enqueue(conn, "faults.work", {"n": start - 1})
        assert warm_up is not None
        wait_finished(url, [warm_up], timeout=60)
        for n in range(start, start + count):
            app.enqueue(conn, "faults.work", {"n": n, "sent": time.time()})
            time.sleep(0.02)
        time.sleep(1.0)
        row = conn.execute(
            "SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms)"
            "  FROM fault_runs WHERE n >= %s AND n < %s",
            [start, start + count],
        ).fetchone()
    assert row is not None and row[0] is not None
    return float(row[0])


class _Pacer:
    """A thread enqueueing ``faults.work`` at ``rate`` jobs/s, evenly (a small
    batch every 5 ms: no bursts), each job stamped with its send time."""

    def __init__(self, url: str, rate: float, first_n: int = 0) -> None:
        self.url, self.rate, self.n = url, rate, first_n
        self.sent: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with connections.connect(self.url) as conn:
            conn.autocommit = True
            next_at = time.monotonic()
            while not self._stop.is_set():
                batch = max(1, int(self.rate / 200))
                now = time.time()
                ids = app.enqueue_many(
                    conn,
                    "faults.work",
                    [{"n": self.n + i, "sent": now} for i in range(batch)],
                )
                self.sent.extend(i for i in ids if i is not None)
                self.n += batch
                next_at += batch / self.rate
                time.sleep(max(0.0, next_at - time.monotonic()))

    def stop(self) -> list[int]:
        self._stop.set()
        self._thread.join()
        return self.sent


def _completion_rate(url: str, ids: Sequence[int]) -> float:
    """Jobs/s between the first start and the last end among ``ids``."""
    with psycopg.connect(url) as conn:
        done, window = conn.execute(
            "SELECT count(*), extract(epoch FROM max(ended_at) - min(started_at))"
            "  FROM fault_runs WHERE job_id = ANY(%s) AND ended_at IS NOT NULL",
            [list(ids)],
        ).fetchone() or (0, None)
    return float(done) / float(window) if window else 0.0


def _maximum_rate(url: str, env: dict[str, str], seconds: float = 30.0) -> float:
    """The processing rate with enqueuers and the worker running together.

    A drain of 5,000 waiting jobs gives the worker's rate alone; then jobs are
    enqueued at that rate while the worker runs, and what the worker
    completes per second over the last two thirds of that window (the
    enqueuer taking its share of the two cores) is the maximum.
    """
    probe = enqueue(url, 5000, start=20_000_000)
    with workers(url, 1, 10, **env):
        wait_finished(url, probe, timeout=300)
        alone = max(1.0, _completion_rate(url, probe))
        pacer = _Pacer(url, alone, first_n=30_000_000)
        time.sleep(seconds / 3)
        with psycopg.connect(url) as conn:
            since = _scalar(conn, "SELECT clock_timestamp()")
        time.sleep(2 * seconds / 3)
        with psycopg.connect(url) as conn:
            done = _scalar(
                conn,
                "SELECT count(*) FROM fault_runs WHERE n >= 30000000"
                "   AND ended_at >= %s",
                since,
            )
        wait_finished(url, pacer.stop(), timeout=300)
    return float(done) / (2 * seconds / 3)


def _timeline(url: str, parts: int = 10) -> list[str]:
    """Per tenth of the load: jobs/s started, latency p50/p99, as notes."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "WITH r AS (SELECT started_at, latency_ms FROM fault_runs"
            "            WHERE latency_ms IS NOT NULL AND n < 10000000),"
            " b AS (SELECT min(started_at) AS t0,"
            "              extract(epoch FROM max(started_at) - min(started_at))"
            "              / %(parts)s AS width FROM r)"
            " SELECT least(floor(extract(epoch FROM r.started_at - b.t0)"
            "                    / nullif(b.width, 0)), %(parts)s - 1) AS part,"
            "        count(*) / max(b.width),"
            "        percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms),"
            "        percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms)"
            "   FROM r CROSS JOIN b GROUP BY 1 ORDER BY 1",
            {"parts": parts},
        ).fetchall()
    return [
        "timeline (tenths of the run: started jobs/s, latency p50/p99 ms): "
        + ", ".join(f"{rate:.0f} {p50:.1f}/{p99:.1f}" for _, rate, p50, p99 in rows)
    ]


def sustained(
    url: str,
    seconds: float = 600.0,
    rate: float | None = None,
    retention: bool = True,
) -> Result:
    """Enqueuers and a worker together at ~70% of the measured maximum, with
    retention deleting succeeded jobs older than a minute, every minute."""
    import psutil

    prepare(url)
    env = {
        "PGJOBS_RETENTION_SUCCEEDED_DAYS": str(60 / 86400),  # 60 s
        "PGJOBS_RETENTION_SCHEDULE": "* * * * *",  # every minute
    }
    if not retention:
        env.clear()
    maximum = None
    if rate is None:
        maximum = _maximum_rate(url, env)
        rate = 0.7 * maximum
    result = Result(f"sustained {seconds:.0f} s at {rate:.0f} jobs/s", 0)
    result.notes.append(_steady_state_wal(url))
    began = time.monotonic()
    with workers(url, 1, 10, **env) as group:
        rss: list[float] = []
        sizes: list[int] = []
        idle_p99 = _idle_latency_p99(url)
        began = time.monotonic()
        pacer = _Pacer(url, rate)
        proc = psutil.Process(group.procs[0].pid)
        with psycopg.connect(url, autocommit=True) as conn:
            while time.monotonic() - began < seconds:
                time.sleep(min(5.0, seconds / 10))
                rss.append(proc.memory_info().rss / 2**20)
                sizes.append(_scalar(conn, "SELECT count(*) FROM procrastinate_jobs"))
        sent = pacer.stop()
        wait_finished(url, sent, timeout=120)
    result.jobs = len(sent)
    # Jobs deleted by retention were succeeded (retention never touches others).
    with psycopg.connect(url) as conn:
        kept = _scalar(
            conn, "SELECT count(*) FROM procrastinate_jobs WHERE id = ANY(%s)", sent
        )
        not_ok = _scalar(
            conn,
            "SELECT count(*) FROM procrastinate_jobs WHERE id = ANY(%s)"
            " AND status <> 'succeeded'",
            sent,
        )
        runs = _scalar(
            conn,
            "SELECT count(DISTINCT job_id) FROM fault_runs WHERE job_id = ANY(%s)",
            sent,
        )
        first, last = (
            conn.execute(
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms),"
                "       percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms)"
                "  FROM (SELECT latency_ms, row_number() OVER (ORDER BY id) AS k"
                "          FROM fault_runs"
                "         WHERE latency_ms IS NOT NULL AND n < 10000000) AS r"
                " WHERE CASE WHEN %(first)s THEN k <= %(part)s"
                "            ELSE k > (SELECT count(latency_ms) FROM fault_runs"
                "                       WHERE n < 10000000) - %(part)s END",
                {"first": first_part, "part": max(1, len(sent) // 5)},
            ).fetchone()
            for first_part in (True, False)
        )
    result.succeeded = runs
    result.lost = len(sent) - runs + not_ok
    third = max(1, len(rss) // 3)
    if maximum is not None:
        result.notes.append(
            f"maximum with enqueuer and worker together {maximum:.0f} jobs/s"
        )
    result.notes.append(f"idle latency p99 {idle_p99:.1f} ms")
    if max(first[1], last[1]) > 2 * idle_p99:
        result.errors += 1
        result.notes.append("latency p99 under load exceeded 2x its idle value")
    if statistics.mean(rss[-third:]) > 1.2 * statistics.mean(rss[:third]):
        result.errors += 1
        result.notes.append("worker RSS grew by more than 20%")
    result.notes.append(
        f"latency p50/p99 ms first fifth {first[0]:.1f}/{first[1]:.1f},"
        f" last fifth {last[0]:.1f}/{last[1]:.1f}"
    )
    result.notes.append(
        f"worker RSS MB first third {statistics.mean(rss[:third]):.1f},"
        f" last third {statistics.mean(rss[-third:]):.1f};"
        f" jobs table rows max {max(sizes)} (enqueued {len(sent)}, kept {kept})"
    )
    result.notes += _timeline(url)
    return _finish(result, url, [], group, began, counted=False)
