"""``python -m bench.prepared``: what turning client-side prepared statements
off costs on a direct connection.

pgjobs' connections run with psycopg's ``prepare_threshold=None`` (no
prepared statements: PgBouncer's transaction mode needs that) unless
``PGJOBS_PREPARE_THRESHOLD`` turns them on. This measures, in the same run
and interleaved (off, on, off, on...), on a direct connection:

- **enqueue single**: one ``app.enqueue`` + commit per transaction;
- **claim + finish**: the worker's hot path from a psycopg loop — claim
  ``batch`` jobs (``pgjobs.fetch_jobs``), finish them (``pgjobs.finish_jobs``)
  — with batch 1 (the most statements per job) and 10.

Each round uses fresh databases; the order of the two alternates between
rounds. "on" is psycopg's default (``prepare_threshold=5``: prepared from a
statement's 6th run), what pgjobs used before.

    python -m bench.prepared                       # a private PostgreSQL
    python -m bench.prepared --database-url URL --jobs 20000 --rounds 5
    python -m bench.prepared --quick               # proves it runs
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from typing import Any

import psycopg
from procrastinate import jobs as procrastinate_jobs
from procrastinate import sql as procrastinate_sql

from bench.db import scratch_database
from pgjobs import App, Settings
from pgjobs.db import connections, queries, schema

CONFIGS: dict[str, int | None] = {"off (pgjobs default)": None, "on (threshold 5)": 5}


def _app(url: str) -> App:
    app = App(settings=Settings(database_url=url, _env_file=None))  # type: ignore[call-arg]

    @app.task(name="bench.noop")
    def noop(n: int) -> None:
        return None

    return app


def enqueue_single(app: App, url: str, threshold: int | None, jobs: int) -> float:
    with connections.connect(url, prepare_threshold=threshold) as conn:
        began = time.perf_counter()
        for n in range(jobs):
            app.enqueue(conn, "bench.noop", {"n": n})
            conn.commit()
        return jobs / (time.perf_counter() - began)


async def claim_finish(
    app: App, url: str, threshold: int | None, jobs: int, batch: int
) -> float:
    with connections.connect(url) as conn:
        app.enqueue_many(conn, "bench.noop", [{"n": n} for n in range(jobs)])
        conn.commit()
    info, _ = connections.options(url)
    async with await psycopg.AsyncConnection.connect(
        info, autocommit=True, prepare_threshold=threshold
    ) as conn:
        cur = await conn.execute(procrastinate_sql.queries["register_worker"])
        row = await cur.fetchone()
        assert row is not None
        worker_id = row[0]
        done = 0
        began = time.perf_counter()
        while done < jobs:
            cur = await conn.execute(
                queries.query("worker_fetch_jobs"),
                {"queues": None, "worker_id": worker_id, "limit": batch, "start": None},
            )
            ids = [r[0] for r in await cur.fetchall()]
            if not ids:
                break
            await conn.execute(
                queries.query("worker_finish_jobs"),
                {
                    "ids": ids,
                    "statuses": [procrastinate_jobs.Status.SUCCEEDED.value] * len(ids),
                    "deletes": [False] * len(ids),
                    "started": [],
                },
            )
            done += len(ids)
        elapsed = time.perf_counter() - began
    if done != jobs:
        raise SystemExit(f"claimed {done} of {jobs} jobs")
    return jobs / elapsed


async def measure(
    admin_url: str, jobs: int, rounds: int
) -> dict[str, dict[str, float]]:
    figures: dict[str, dict[str, list[float]]] = {}
    for round_no in range(rounds):
        order = list(CONFIGS.items())
        if round_no % 2:  # neither always runs first (a cold cache)
            order.reverse()
        for label, threshold in order:
            async with scratch_database(
                admin_url, f"bench_prepared_{round_no}_{threshold}"
            ) as url:
                schema.upgrade(url)
                app = _app(url)
                got = figures.setdefault(label, {})
                rate = enqueue_single(app, url, threshold, jobs)
                got.setdefault("enqueue single (jobs/s)", []).append(rate)
                for batch in (1, 10):
                    rate = await claim_finish(app, url, threshold, jobs, batch)
                    key = f"claim + finish, batch {batch} (jobs/s)"
                    got.setdefault(key, []).append(rate)
            print(f"round {round_no + 1}/{rounds} {label}: done", file=sys.stderr)
    return {
        label: {
            key: statistics.median(values) for key, values in figures[label].items()
        }
        for label in CONFIGS
    }


def render(result: dict[str, dict[str, float]], jobs: int, rounds: int) -> str:
    labels = list(result)
    off, on = labels[0], labels[1]
    lines = [
        f"Prepared statements on a direct connection: median of {rounds} "
        f"interleaved round(s), {jobs} jobs each",
        "",
        f"| figure | {off} | {on} | off vs on |",
        "|---|---:|---:|---:|",
    ]
    for key in result[off]:
        a, b = result[off][key], result[on][key]
        lines.append(f"| {key} | {a:,.0f} | {b:,.0f} | {100 * (a / b - 1):+.1f}% |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.prepared")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("PGJOBS_BENCH_DATABASE_URL"),
        help="admin URL (default $PGJOBS_BENCH_DATABASE_URL; unset: a private "
        "PostgreSQL)",
    )
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="200 jobs, 1 round")
    args = parser.parse_args(argv)
    jobs, rounds = (200, 1) if args.quick else (args.jobs, args.rounds)
    admin_url = args.database_url
    cluster: Any = None
    if not admin_url:
        from faults.cluster import Cluster  # the fault suite's throwaway server

        cluster = Cluster()
        admin_url = cluster.url
    try:
        result = asyncio.run(measure(admin_url, jobs, rounds))
    finally:
        if cluster is not None:
            cluster.close()
    print(render(result, jobs, rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
