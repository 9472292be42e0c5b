"""``python -m bench.worker_exit``: what a worker leaving costs, before and
after migration 0016.

``procrastinate_jobs.worker_id`` references ``procrastinate_workers`` with
``ON DELETE SET NULL``. Up to revision 0015 a finished job kept the id of
the worker that ran it, so deleting a worker's row updated every kept job it
ever ran; from 0016 a finished job keeps none (``pgjobs.finish_jobs`` and
the trigger ``pgjobs_clear_job_worker`` clear it), so nothing is left to
update. In the same run, one scratch database per revision (0015, 0016):

- seeds ``--jobs`` finished jobs run by worker A and as many run by worker B
  (``generate_series``, as each revision leaves them: at 0016 the trigger
  clears ``worker_id`` on insert, as ``finish_jobs`` does), then ``VACUUM
  ANALYZE`` and autovacuum off on the jobs table (nothing else writes WAL);
- **worker stops**: ``procrastinate_unregister_worker_v1(A)``, what a
  stopping worker (procrastinate's or pgjobs') runs last;
- **dead worker pruned**: B's heartbeat is 1 h old,
  ``procrastinate_prune_stalled_workers_v1(30)``, what every worker runs
  periodically to remove the rows of workers that died.

Each is one transaction after a ``CHECKPOINT`` (the first change of a page
after a checkpoint logs the whole page: the case of every exit but the
first within a checkpoint interval is smaller, not larger). Seconds: client
wall clock, commit included; WAL: ``pg_current_wal_insert_lsn()`` before and
after; rows updated: the growth of ``pg_stat_xact_user_tables.n_tup_upd``
of ``procrastinate_jobs`` over the statement (the foreign key's updates).

    python -m bench.worker_exit                    # private PostgreSQL, 1,000,000 jobs
    python -m bench.worker_exit --jobs 100000 --database-url URL
    python -m bench.worker_exit --quick            # 10,000 jobs: proves it runs
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from bench.db import scratch_database, server_version
from pgjobs.db import schema

REVISIONS = {"0015": "0015 (before)", "0016": "0016 (after)"}

WORKERS = """
INSERT INTO procrastinate_workers (last_heartbeat)
VALUES (now()), (now() - interval '1 hour')
RETURNING id
"""
# Jobs as the worker left them: succeeded (1 in 20 failed), one attempt.
SEED = """
INSERT INTO procrastinate_jobs
       (queue_name, task_name, status, args, attempts, worker_id)
SELECT 'queue_' || (i %% 5), 'task_' || (i %% 20),
       (CASE WHEN i %% 20 = 0 THEN 'failed' ELSE 'succeeded' END)
           ::procrastinate_job_status,
       jsonb_build_object('item_id', i), 1, %(worker)s
  FROM generate_series(1, %(jobs)s) AS i
"""
HOLDING = """
SELECT count(*) FROM procrastinate_jobs
 WHERE worker_id IS NOT NULL
   AND status IN ('succeeded', 'failed', 'cancelled', 'aborted')
"""
UPDATED = """
SELECT coalesce(sum(n_tup_upd), 0) FROM pg_stat_xact_user_tables
 WHERE relid = 'procrastinate_jobs'::regclass
"""


@dataclass
class Leaving:
    seconds: float
    wal_bytes: int
    rows_updated: int


@dataclass
class Outcome:
    holding: int
    stop: Leaving
    prune: Leaving


async def scalar(conn: psycopg.AsyncConnection[Any], query: str, **params: Any) -> Any:
    row = await (await conn.execute(query, params or None)).fetchone()  # type: ignore[arg-type]
    return row[0] if row else None


async def leave(
    conn: psycopg.AsyncConnection[Any], statement: str, worker: int | None
) -> Leaving:
    await conn.execute("CHECKPOINT")
    began_at = await scalar(conn, "SELECT pg_current_wal_insert_lsn()")
    began = time.perf_counter()
    async with conn.transaction():
        # The counters include earlier transactions' updates not yet flushed
        # to the statistics (PostgreSQL 15+): the difference is this one's.
        before = int(await scalar(conn, UPDATED))
        await conn.execute(statement, {"worker": worker})  # type: ignore[arg-type]
        updated = int(await scalar(conn, UPDATED)) - before
    seconds = time.perf_counter() - began
    wal = await scalar(
        conn,
        "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %(lsn)s)::bigint",
        lsn=began_at,
    )
    return Leaving(seconds, int(wal), updated)


async def measure_revision(admin_url: str, revision: str, jobs: int) -> Outcome:
    async with scratch_database(admin_url, f"bench_worker_exit_{revision}") as dsn:
        schema.upgrade(dsn, revision)
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            rows = await (await conn.execute(WORKERS)).fetchall()
            stopping, dead = (int(row[0]) for row in rows)
            began = time.perf_counter()
            for worker in (stopping, dead):
                await conn.execute(SEED, {"worker": worker, "jobs": jobs})
            await conn.execute(
                "ALTER TABLE procrastinate_jobs SET (autovacuum_enabled = false)"
            )
            await conn.execute("VACUUM ANALYZE procrastinate_jobs")
            print(
                f"{revision}: seeded {2 * jobs:,} finished jobs in "
                f"{time.perf_counter() - began:.0f} s",
                file=sys.stderr,
            )
            holding = int(await scalar(conn, HOLDING))
            stop = await leave(
                conn, "SELECT procrastinate_unregister_worker_v1(%(worker)s)", stopping
            )
            prune = await leave(
                conn,
                "SELECT count(*) FROM procrastinate_prune_stalled_workers_v1(30)",
                None,
            )
            left = await scalar(conn, "SELECT count(*) FROM procrastinate_workers")
            assert left == 0, f"{left} worker row(s) left"
            return Outcome(holding, stop, prune)


def _size(n: int) -> str:
    for unit, factor in (("MB", 1 << 20), ("kB", 1 << 10)):
        if n >= factor:
            return f"{n / factor:,.1f} {unit}"
    return f"{n} B"


def render(results: dict[str, Outcome], jobs: int, version: str) -> str:
    header = "| | " + " | ".join(REVISIONS[r] for r in results) + " |"
    lines = [
        f"PostgreSQL {version}; {jobs:,} finished jobs run by the worker that "
        f"stops and {jobs:,} by the dead one pruned; one transaction each, "
        "after a CHECKPOINT.",
        "",
        header,
        "|---|" + "---:|" * len(results),
        "| finished jobs holding a worker id | "
        + " | ".join(f"{o.holding:,}" for o in results.values())
        + " |",
    ]
    for label, pick in (
        ("worker stops (`procrastinate_unregister_worker_v1`)", "stop"),
        ("dead worker pruned (`procrastinate_prune_stalled_workers_v1`)", "prune"),
    ):
        done = {r: getattr(o, pick) for r, o in results.items()}
        lines += [
            f"| {label}: seconds | "
            + " | ".join(f"{d.seconds:.3f}" for d in done.values())
            + " |",
            f"| {label}: WAL | "
            + " | ".join(_size(d.wal_bytes) for d in done.values())
            + " |",
            f"| {label}: job rows updated | "
            + " | ".join(f"{d.rows_updated:,}" for d in done.values())
            + " |",
        ]
    return "\n".join(lines)


async def measure(admin_url: str, jobs: int) -> tuple[dict[str, Outcome], str]:
    results = {}
    for revision in REVISIONS:
        results[revision] = await measure_revision(admin_url, revision, jobs)
    return results, await server_version(admin_url)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worker_exit")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("PGJOBS_BENCH_DATABASE_URL"),
        help="admin URL (default $PGJOBS_BENCH_DATABASE_URL; unset: a private "
        "PostgreSQL); the role needs CREATEDB and CHECKPOINT (pg_checkpoint)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1_000_000,
        help="finished jobs per worker (default 1,000,000)",
    )
    parser.add_argument("--quick", action="store_true", help="10,000 jobs")
    parser.add_argument("--output", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    jobs = 10_000 if args.quick else args.jobs
    admin_url = args.database_url
    cluster: Any = None
    if not admin_url:
        from faults.cluster import Cluster  # the fault suite's throwaway server

        cluster = Cluster()
        admin_url = cluster.url
    try:
        results, version = asyncio.run(measure(admin_url, jobs))
    finally:
        if cluster is not None:
            cluster.close()
    table = render(results, jobs, version)
    print(table)
    if args.output:
        args.output.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
