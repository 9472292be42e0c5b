"""Fleet-wide limits under worker kills: four workers drain jobs of a task
limited per tenant (concurrency) and overall (rate) and of a task with a
concurrency limit, while one worker is SIGKILLed every few seconds.

From the start and end times each run records (``fault_limit_runs``): no
limit is ever exceeded in any window, nothing is lost, and how close each
task got to its limit (throughput against the limit). A killed run's end is
unknown: it counts as running for its full length (its slot stays taken
until the stalled-job rescue puts the job back, which is longer).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from typing import Any

import psycopg

from faults import scenarios
from faults.limited_app import CAPPED, PER_TENANT, RATE, SETUP_SQL
from pgjobs.db import schema

#: A job's code starts a few ms after its claim (which is what the rate
#: limit counts), more on a busy machine: a rate window is checked this much
#: shorter (a fixed window's 2N burst across its boundary would still show:
#: it fits in a few ms). tests/worker/test_limit_processes.py uses the same.
JITTER_S = 0.2
APP = "faults.limited_app.app"


def enqueue(url: str, task: str, args: list[dict[str, Any]]) -> list[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        return [
            row[0]
            for row in conn.execute(
                "INSERT INTO procrastinate_jobs (queue_name, task_name, args)"
                " SELECT 'default', %s, a FROM unnest(%s::jsonb[]) AS a"
                " RETURNING id",
                (task, [json.dumps(a) for a in args]),
            ).fetchall()
        ]


def most_in_window(starts: Sequence[float], window: float) -> int:
    ordered = sorted(starts)
    most, first = 0, 0
    for last, at in enumerate(ordered):
        while ordered[first] <= at - window:
            first += 1
        most = max(most, last - first + 1)
    return most


def most_overlapping(spans: Sequence[tuple[float, float]]) -> int:
    # Ends before starts at the same instant: a slot freed, then taken.
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


def limits_under_kills(
    url: str,
    jobs: int = 600,
    tenants: int = 5,
    kill_every: float = 2.0,
    workers_n: int = 4,
    ms: int = 50,
) -> scenarios.Result:
    schema.upgrade(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SETUP_SQL)  # type: ignore[arg-type]
    # One tenant with most of the jobs: the others must not wait behind it.
    names = ["big"] * (jobs // 2) + [
        f"t{i % (tenants - 1)}" for i in range(jobs - jobs // 2)
    ]
    limited = enqueue(
        url,
        "faults.limited",
        [{"n": n, "tenant": t, "ms": ms} for n, t in enumerate(names)],
    )
    capped = enqueue(
        url, "faults.capped", [{"n": n, "ms": ms * 4} for n in range(jobs // 3)]
    )
    ids = limited + capped
    result = scenarios.Result(
        f"limits: {workers_n} workers, SIGKILL every {kill_every:.0f} s", len(ids)
    )
    began = time.monotonic()
    kills = 0
    with scenarios.workers(url, workers_n, 8, APP) as group:
        next_kill = time.monotonic() + kill_every

        def kill_now_and_then() -> None:
            nonlocal next_kill, kills
            if time.monotonic() >= next_kill:
                group.kill_and_restart(random.randrange(workers_n))
                kills += 1
                next_kill = time.monotonic() + kill_every
            group.check_alive()

        scenarios.wait_finished(url, ids, timeout=600, during=kill_now_and_then)
    result.notes.append(f"{kills} kills")
    _check(url, result, limited, capped, ms)
    return scenarios._finish(result, url, ids, group, began, counted=False)


def _check(
    url: str, result: scenarios.Result, limited: list[int], capped: list[int], ms: int
) -> None:
    with psycopg.connect(url) as conn:
        statuses = dict(
            conn.execute(
                "SELECT status::text, count(*) FROM procrastinate_jobs"
                " WHERE id = ANY(%s) GROUP BY 1",
                (limited + capped,),
            ).fetchall()
        )
        runs = conn.execute(
            "SELECT job_id, task_name, tenant, extract(epoch FROM started_at)::float8,"
            " extract(epoch FROM coalesce(ended_at,"
            "   started_at + make_interval(secs => ms / 1000.0)))::float8,"
            " ended_at IS NULL"
            " FROM fault_limit_runs"
        ).fetchall()
    result.succeeded = int(statuses.get("succeeded", 0))
    result.dead_lettered = int(statuses.get("failed", 0))
    result.lost = result.jobs - result.succeeded - result.dead_lettered
    ran = {run[0] for run in runs}
    result.lost += len(set(limited + capped) - ran)
    killed = sum(1 for run in runs if run[5])
    result.duplicated_runs = len(runs) - len(ran)
    result.interrupted_runs = killed
    api = [run for run in runs if run[1] == "faults.limited"]
    starts = [run[3] for run in api]
    per_second = most_in_window(starts, 1.0 - JITTER_S)
    per_tenant = max(
        most_overlapping([(r[3], r[4]) for r in api if r[2] == tenant])
        for tenant in {r[2] for r in api}
    )
    boxed = [(r[3], r[4]) for r in runs if r[1] == "faults.capped"]
    at_once = most_overlapping(boxed)
    # Breaches count as lock violations: the "never" of the limits.
    result.lock_violations = (
        max(0, per_second - RATE)
        + max(0, per_tenant - PER_TENANT)
        + max(0, at_once - CAPPED)
    )
    span = max(starts) - min(starts) if len(starts) > 1 else 0.0
    rate = (len(starts) - 1) / span if span else 0.0
    capped_span = max(e for _, e in boxed) - min(s for s, _ in boxed)
    busy = sum(e - s for s, e in boxed) / capped_span if capped_span else 0.0
    result.notes += [
        f"rate limit {RATE}/s: at most {per_second} starts in any"
        f" {1 - JITTER_S:g} s window;"
        f" {rate:.1f} starts/s overall ({rate / RATE:.0%} of the limit)",
        f"per-tenant concurrency {PER_TENANT}: at most {per_tenant} at once",
        f"task concurrency {CAPPED}: at most {at_once} at once;"
        f" {busy:.1f} running on average ({busy / CAPPED:.0%} of the limit)",
        f"{killed} runs killed mid-way",
    ]
