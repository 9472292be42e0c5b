"""``python -m faults``: run the fault scenarios and print a markdown table.

    python -m faults                 # full: 10k crash, 50k concurrency, 10 min load
    python -m faults --quick         # small counts, 60 s load (what CI's tests run)
    python -m faults --only crash,restart --sustained 120

The database is ``PGJOBS_FAULTS_DATABASE_URL`` (an admin URL: a scratch
database is created next to it) or, unset, a PostgreSQL the suite starts
itself. The database-restart scenario always runs on a cluster the suite
started itself, since it stops and starts it; the failover scenarios on a
primary and a streaming standby of their own (faults/replication.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from faults import deploys, failover, limits, pooler, scenarios
from faults.cluster import Cluster


@contextmanager
def scratch(admin_url: str | None, name: str) -> Iterator[str]:
    """A fresh database ``name`` on ``admin_url`` (or on a private cluster)."""
    cluster = Cluster() if admin_url is None else None
    base = cluster.url if cluster is not None else admin_url
    assert base is not None
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)
            )
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    parts = urllib.parse.urlsplit(base)
    if parts.scheme:
        url = urllib.parse.urlunsplit(parts._replace(path="/" + name))
    else:
        url = f"{base} dbname={name}"
    try:
        yield url
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(name)
                )
            )
        if cluster is not None:
            cluster.close()


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "**no**")


def table(results: list[scenarios.Result]) -> str:
    lines = [
        "| scenario | jobs | succeeded | dead-lettered | lost | duplicated runs"
        " (interrupted attempts) | unexplained duplicates | uncounted runs"
        " | lock violations | priority violations | errors | stuck"
        " | health truthful | lost in the replication lag window | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.scenario} | {r.jobs} | {r.succeeded} | {r.dead_lettered} | {r.lost}"
            f" | {r.duplicated_runs} ({r.interrupted_runs})"
            f" | {r.unexplained_duplicates} | {r.uncounted_runs}"
            f" | {r.lock_violations} | {r.priority_violations} | {r.errors}"
            f" | {r.stuck} | {_yes_no(r.health_truthful)}"
            f" | {'-' if r.lag_window_lost is None else r.lag_window_lost}"
            f" | {r.seconds} |"
        )
    notes = [f"- {r.scenario}: {note}" for r in results for note in r.notes]
    return "\n".join(lines + (["", *notes] if notes else []))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m faults", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="small counts")
    parser.add_argument(
        "--only",
        help="comma list of: crash,crash-prefetch,restart,cut,concurrency,"
        "sustained,deploy,pooler,shortage,failover,failover-async",
    )
    parser.add_argument("--sustained", type=float, help="seconds of sustained load")
    args = parser.parse_args(argv)
    quick = args.quick
    admin_url = os.environ.get("PGJOBS_FAULTS_DATABASE_URL") or None
    chosen = set(
        (
            args.only
            or "crash,crash-prefetch,restart,cut,concurrency,sustained,deploy,"
            "pooler,shortage,failover,failover-async,limits"
        ).split(",")
    )
    seconds = args.sustained or (60.0 if quick else 600.0)
    runs: dict[str, Callable[[], scenarios.Result]] = {}

    def on_scratch(
        name: str, run: Callable[[str], scenarios.Result]
    ) -> Callable[[], scenarios.Result]:
        def go() -> scenarios.Result:
            with scratch(admin_url, f"pgjobs_faults_{name}") as url:
                return run(url)

        return go

    def restart() -> scenarios.Result:
        cluster = Cluster()
        try:
            return scenarios.database_restart(cluster, jobs=1_000 if quick else 5_000)
        finally:
            cluster.close()

    runs["crash"] = on_scratch(
        "crash",
        lambda url: scenarios.worker_crashes(url, jobs=1_000 if quick else 10_000),
    )
    runs["crash-prefetch"] = on_scratch(
        "crash_prefetch",
        lambda url: scenarios.worker_crashes(
            url, jobs=1_000 if quick else 10_000, prefetch=10
        ),
    )
    runs["restart"] = restart
    runs["cut"] = on_scratch(
        "cut",
        lambda url: scenarios.connections_cut(url, jobs=1_000 if quick else 5_000),
    )
    runs["concurrency"] = on_scratch(
        "concurrency",
        lambda url: scenarios.concurrency(url, jobs=3_000 if quick else 50_000),
    )
    # A primary and a streaming standby of their own (faults/replication.py).
    runs["failover"] = lambda: failover.promote_under_load(
        True, load_after=4.0 if quick else 15.0
    )
    runs["failover-async"] = lambda: failover.promote_under_load(
        False, load_after=4.0 if quick else 15.0
    )
    runs["sustained"] = on_scratch(
        "sustained", lambda url: scenarios.sustained(url, seconds=seconds)
    )
    runs["deploy"] = on_scratch(
        "deploy",
        lambda url: deploys.rolling_deploy(
            url, long_jobs=6 if quick else 12, rounds=2 if quick else 5
        ),
    )
    runs["pooler"] = on_scratch(
        "pooler",
        lambda url: pooler.pooler(url, jobs=1_000 if quick else 10_000),
    )
    # On a cluster of its own: it lowers max_connections and restarts it.
    runs["shortage"] = lambda: pooler.shortage(jobs=500 if quick else 5_000)
    runs["limits"] = on_scratch(
        "limits",
        lambda url: limits.limits_under_kills(url, jobs=300 if quick else 3_000),
    )
    results = []
    for name, run in runs.items():
        if name in chosen:
            print(f"running {name}...", file=sys.stderr, flush=True)
            results.append(run())
    print(table(results))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
