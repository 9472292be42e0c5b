"""The write cost of a job: WAL per lifecycle stage, bytes on disk per
finished job, and what retention costs (``--scenarios footprint``).

Each run is a fresh scratch database: the schema is installed and a
``CHECKPOINT`` taken, then ``footprint_jobs`` jobs go through their life one
stage at a time, with ``pg_current_wal_lsn()`` read before and after each:

* enqueue: the jobs in bulk calls of up to 10,000 (``fill_queue``);
* run: one worker process at concurrency 10 (pgqueuer: batch size 5)
  claims, starts and finishes them all (the database says when: every
  job succeeded);
* exit: the worker is stopped (SIGTERM) and leaves;
* vacuum: a plain ``VACUUM`` then removes the dead row versions the run
  left (what autovacuum would do, and write, soon after);
* prune: the system's retention deletes the finished jobs.

WAL is the whole server's, so the figures need an otherwise idle server:
the private PostgreSQL the harness starts by default is one. Autovacuum is
turned off on the scratch tables so that vacuuming is measured in its own
stage rather than wherever autovacuum happens to run. Bytes on disk are
``pg_total_relation_size`` (heap, indexes, TOAST) of every table outside the
system catalogs, less what the empty schema takes, per job: as the worker
leaves them, then after ``VACUUM FULL`` (the live rows only).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from psycopg import sql

from bench import db
from bench.errors import BenchError
from bench.measure import Context, Samples, fill_queue, log, verify_done, wait_until
from bench.workers import check_executions, kill_workers, start_workers, stop_workers

#: 100M jobs a day is this many an hour: what an hour of retention deletes.
HOUR_AT_100M_A_DAY = 100_000_000 / 24

LSN_SQL = "SELECT pg_current_wal_lsn()::text"
WAL_SINCE_SQL = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::text::pg_lsn)"
SIZE_SQL = """
SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
  FROM pg_class AS c
  JOIN pg_namespace AS n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'm')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg_toast%%'
"""
TABLES_SQL = """
SELECT n.nspname || '.' || c.relname
  FROM pg_class AS c
  JOIN pg_namespace AS n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r'
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg_toast%%'
"""
T = TypeVar("T")


async def _value(dsn: str, query: str, *params: object) -> object:
    async with await db.connect(dsn) as conn:
        row = await (await conn.execute(query, params or None)).fetchone()
    assert row is not None
    return row[0]


async def _wal(dsn: str, stage: Callable[[], Awaitable[T]]) -> tuple[T, float, float]:
    """Run ``stage``: its result, WAL bytes and seconds."""
    start = await _value(dsn, LSN_SQL)
    t0 = time.perf_counter()
    result = await stage()
    elapsed = time.perf_counter() - t0
    wal = float(await _value(dsn, WAL_SINCE_SQL, start))  # type: ignore[arg-type]
    if os.environ.get("PGJOBS_BENCH_WAL_RANGES"):  # for pg_waldump --stats
        log(f"    WAL {start} .. {await _value(dsn, LSN_SQL)}")
    return result, wal, elapsed


async def _size(dsn: str) -> int:
    size = await _value(dsn, SIZE_SQL)
    assert isinstance(size, int)
    return size


async def footprint(ctx: Context) -> Samples:
    samples: Samples = {}
    for _ in range(ctx.plan.runs):
        for key, value in (await _one_run(ctx)).items():
            samples.setdefault(key, []).append(value)
    return samples


async def _one_run(ctx: Context) -> dict[str, float]:
    n = ctx.plan.footprint_jobs
    ns = range(n)
    out: dict[str, float] = {}
    async with db.scratch_database(ctx.admin_dsn, ctx.dbname) as dsn:
        await ctx.adapter.install_schema(dsn)
        async with await db.connect(dsn) as conn:
            # Each stage's vacuuming is measured in the vacuum stage, not
            # wherever autovacuum happens to run.
            for (table,) in await (await conn.execute(TABLES_SQL)).fetchall():
                await conn.execute(
                    sql.SQL("ALTER TABLE {} SET (autovacuum_enabled = off)").format(
                        sql.Identifier(*table.split("."))
                    )
                )
            await conn.execute("CHECKPOINT")
        empty = await _size(dsn)

        ids, wal, _ = await _wal(dsn, lambda: fill_queue(ctx, dsn, ns))
        out["fp_wal_enqueue"] = wal / n
        await db.analyze(dsn)

        workers = await start_workers(
            ctx.system, dsn, ctx.tmp, concurrency=10, drain=False, expected=n
        )
        try:
            async with await db.connect(dsn) as conn:

                async def finished() -> bool:
                    v = await ctx.adapter.verify(conn, ids)
                    return v.succeeded >= n  # pgqueuer counts queued jobs in failed

                timeout = max(300.0, n / 20)
                _, wal, _ = await _wal(dsn, lambda: wait_until(finished, timeout))
                out["fp_wal_run"] = wal / n
                await asyncio.sleep(0.5)  # as the latency scenario: idle first
                outputs, wal, _ = await _wal(dsn, lambda: stop_workers(workers))
                out["fp_wal_exit"] = wal / n
        finally:
            await kill_workers(workers)
        check_executions(outputs, ns)
        await verify_done(ctx, dsn, ids)

        out["fp_bytes_kept"] = (await _size(dsn) - empty) / n
        async with await db.connect(dsn) as conn:
            _, wal, _ = await _wal(dsn, lambda: conn.execute("VACUUM"))
            out["fp_wal_vacuum"] = wal / n
            await conn.execute("VACUUM FULL")
        out["fp_bytes_vacuumed"] = (await _size(dsn) - empty) / n

        lifecycle = sum(
            out[key]
            for key in ("fp_wal_enqueue", "fp_wal_run", "fp_wal_exit", "fp_wal_vacuum")
        )
        pruned, wal, elapsed = await _wal(dsn, lambda: ctx.adapter.prune(dsn))
        if pruned is not None:
            if pruned != n:
                raise BenchError(f"{ctx.system}: pruned {pruned} of {n} jobs")
            out["fp_wal_prune"] = wal / n
            out["fp_prune_us"] = elapsed / n * 1e6
            out["fp_prune_hour_s"] = elapsed / n * HOUR_AT_100M_A_DAY
            out["fp_wal_prune_hour"] = wal / n * HOUR_AT_100M_A_DAY / 2**30
            lifecycle += wal / n
        out["fp_wal_lifecycle"] = lifecycle
        out["fp_wal_hour"] = lifecycle * HOUR_AT_100M_A_DAY / 2**30
    log(
        f"  {ctx.system} footprint: {lifecycle:,.0f} WAL bytes/job, "
        f"{out['fp_bytes_kept']:,.0f} bytes/job kept, "
        f"{out['fp_bytes_vacuumed']:,.0f} after VACUUM FULL"
    )
    return out
