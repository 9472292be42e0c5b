"""The rolling-deploy scenario: workers SIGTERMed one by one, short grace.

Three ``pgjobs worker`` processes run 5 s async and sync jobs beside short
ones; each worker in turn gets SIGTERM with ``PGJOBS_SHUTDOWN_GRACE=1`` and
a successor starts, round after round, as a rolling deploy does. The long
jobs running when a grace ends are interrupted (``pgjobs.worker.interruptions``):
they must go back to the queue and run again, without using up their retry
policy (unless interrupted ``PGJOBS_MAX_INTERRUPTIONS`` times, then as the
policy says), and no worker may outlive its grace by more than a margin.

Counts are ``faults.scenarios``' (lost, stuck, duplicates...), with two that
know interruptions: a run again under the same attempt number is explained
by an interruption row of that attempt (not an uncounted run), and an extra
complete run is explained by an interruption of its job (a sync job's thread
may return after its job was handed back, before its process exits).
``pgjobs health --json`` is sampled after every restart and at the end,
and checked against what the scenario knows (see ``_health_lies``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import psycopg

from faults import scenarios
from faults.scenarios import ROOT, Result

GRACE = 1.0
#: Longest a stopped worker may take beyond its grace to exit.
EXIT_MARGIN = 2.0
#: Below the default (3): a job interrupted twice (the full run's five rounds
#: make that likely) takes the counted path too (policy, health row).
MAX_INTERRUPTIONS = 2
LONG_MS = 5_000


def _enqueue_long(url: str, count: int, start: int) -> list[int]:
    ids = scenarios.enqueue(url, count, ms=LONG_MS, start=start)
    with psycopg.connect(url) as conn:
        from faults.app import app

        sync_ids = app.enqueue_many(
            conn,
            "faults.work_sync",
            [{"n": n, "ms": LONG_MS} for n in range(start + count, start + 2 * count)],
        )
        conn.commit()
    return ids + [i for i in sync_ids if i is not None]


def _wait_long_running(
    url: str, ids: Sequence[int], slots: int, timeout: float = 60
) -> dict[int, int]:
    """Until the long jobs ``ids`` are running (as many as the workers have
    room for) or have all started; returns how many each worker pid runs.
    A fixed pause let a slow box SIGTERM workers before their claims."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            rows = conn.execute(
                "SELECT pid, count(*) FILTER (WHERE ended_at IS NULL),"
                " count(DISTINCT job_id) FROM fault_runs"
                " WHERE job_id = ANY(%s) GROUP BY pid",
                [list(ids)],
            ).fetchall()
            running = {int(pid): int(n) for pid, n, _ in rows}
            started = sum(int(n) for _, _, n in rows)
            if sum(running.values()) >= min(len(ids), slots) or started >= len(ids):
                return running
            if time.monotonic() > deadline:
                raise TimeoutError(f"long jobs not running in {timeout} s: {running}")
            time.sleep(0.05)


def _health(url: str, env: dict[str, str]) -> tuple[int, list[dict[str, Any]]]:
    """``pgjobs health --json`` with the workers' settings (stall threshold)."""
    result = subprocess.run(
        [sys.executable, "-m", "pgjobs", "health", "--json"],
        env={**env, "PGJOBS_DATABASE_URL": url},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    try:
        problems = json.loads(result.stdout)
    except ValueError:
        problems = [{"check": "unreadable", "detail": result.stderr[-200:]}]
    return result.returncode, problems


def _health_lies(
    url: str,
    code: int,
    problems: list[dict[str, Any]],
    *,
    final: bool,
    lost: int = 0,
) -> list[str]:
    """What ``pgjobs health`` said that the facts contradict.

    No worker dies in this scenario and every stop hands its jobs back, so
    a ``stalled_job`` is never true; an ``interrupted_job`` must be a job
    interrupted at least PGJOBS_MAX_INTERRUPTIONS times; at the end (every
    job final) the only true rows are new dead letters, and jobs lost (ended
    neither succeeded nor dead-lettered: aborted by a stop) must not go
    unreported; the exit code is 1 exactly when there are rows.
    """
    lies = []
    if final and lost and not problems:
        lies.append(f"{lost} job(s) lost, health reported nothing")
    if code != (1 if problems else 0):
        lies.append(f"exit code {code} with {len(problems)} row(s)")
    with psycopg.connect(url) as conn:
        letters = {
            row[0]
            for row in conn.execute(
                "SELECT 'task ' || task_name FROM pgjobs.dead_letters"
                " WHERE replayed_at IS NULL"
            )
        }
        for problem in problems:
            check = problem.get("check")
            subject = str(problem.get("subject", ""))
            if check == "interrupted_job" and not final:
                job_id = int(subject.removeprefix("job "))
                row = conn.execute(
                    "SELECT count(*) FROM pgjobs.job_errors"
                    " WHERE job_id = %s AND error_type = 'WorkerShutdown'",
                    [job_id],
                ).fetchone()
                if row is None or row[0] < MAX_INTERRUPTIONS:
                    lies.append(f"{subject} reported interrupted {row} times")
            elif check == "new_dead_letters" and subject in letters:
                continue
            else:
                lies.append(f"{check} {subject}: {problem.get('detail', '')}"[:160])
        if final:
            reported = {
                str(p.get("subject"))
                for p in problems
                if p.get("check") == "new_dead_letters"
            }
            for missing in letters - reported:
                lies.append(f"dead letters of {missing} not reported")
    return lies


def _interruption_aware_counts(url: str, result: Result, ids: Sequence[int]) -> None:
    """Duplicates and uncounted runs, explained by recorded interruptions;
    and attempts that interruptions used up although they were free."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "WITH interruptions AS ("
            "  SELECT job_id, attempt, count(*) AS n FROM pgjobs.job_errors"
            "   WHERE job_id = ANY(%(ids)s) AND kind = 'interruption'"
            "   GROUP BY job_id, attempt),"
            " per_attempt AS ("
            "  SELECT job_id, attempt, count(*) AS runs FROM fault_runs"
            "   WHERE job_id = ANY(%(ids)s) GROUP BY job_id, attempt),"
            " per_job AS ("
            "  SELECT job_id, count(*) FILTER (WHERE ended_at IS NOT NULL) AS clean"
            "    FROM fault_runs WHERE job_id = ANY(%(ids)s) GROUP BY job_id)"
            " SELECT"
            "  (SELECT coalesce(sum(greatest(p.runs - 1 - coalesce(i.n, 0), 0)), 0)"
            "     FROM per_attempt AS p"
            "     LEFT JOIN interruptions AS i USING (job_id, attempt)),"
            "  (SELECT coalesce(sum(greatest(j.clean - 1 - coalesce("
            "       (SELECT sum(n) FROM interruptions AS i"
            "         WHERE i.job_id = j.job_id), 0),"
            "       0)), 0) FROM per_job AS j),"
            "  (SELECT count(*) FROM pgjobs.job_errors"
            "    WHERE job_id = ANY(%(ids)s) AND kind = 'interruption'),"
            "  (SELECT count(*) FROM pgjobs.job_errors"
            "    WHERE job_id = ANY(%(ids)s) AND kind = 'error'"
            "      AND error_type = 'WorkerShutdown'),"
            "  (SELECT count(*) FROM procrastinate_jobs AS job"
            "    WHERE job.id = ANY(%(ids)s) AND job.status = 'succeeded'"
            "      AND job.attempts <> 1 + ("
            "          SELECT count(*) FROM pgjobs.job_errors AS e"
            "           WHERE e.job_id = job.id AND e.kind = 'error'))",
            {"ids": list(ids)},
        ).fetchone()
    assert row is not None
    uncounted, unexplained, free, counted, budget_used = (int(v) for v in row)
    result.uncounted_runs = uncounted
    result.unexplained_duplicates = unexplained
    result.notes.append(
        f"{free} interruptions handed back free, {counted} counted as attempts"
        f" (PGJOBS_MAX_INTERRUPTIONS={MAX_INTERRUPTIONS})"
    )
    if budget_used:
        result.errors += budget_used
        result.notes.append(
            f"{budget_used} succeeded job(s) whose attempts exceed their counted"
            " failures: a free interruption used up an attempt"
        )


def rolling_deploy(
    url: str,
    long_jobs: int = 12,
    short_per_round: int = 200,
    rounds: int = 3,
    workers_n: int = 3,
    pause: float = 2.0,
) -> Result:
    """``rounds`` rolling deploys over ``workers_n`` workers; ``long_jobs``
    5 s async and as many 5 s sync jobs per round, beside short ones."""
    scenarios.prepare(url)
    ids: list[int] = []
    n = 0
    result = Result(
        f"rolling deploy: {workers_n} workers SIGTERMed one by one, grace"
        f" {GRACE:g} s, x{rounds}",
        0,
    )
    began = time.monotonic()
    env = {
        "PGJOBS_SHUTDOWN_GRACE": str(GRACE),
        "PGJOBS_MAX_INTERRUPTIONS": str(MAX_INTERRUPTIONS),
    }
    exits: list[float] = []
    lies: list[str] = []
    samples = 0
    with scenarios.workers(url, workers_n, 4, **env) as group:
        scenarios.wait_ready(url, workers_n)
        for _ in range(rounds):
            long_ids = _enqueue_long(url, long_jobs, n)
            n += 2 * long_jobs
            ids += long_ids + scenarios.enqueue(url, short_per_round, ms=100, start=n)
            n += short_per_round
            holders = _wait_long_running(url, long_ids, workers_n * group.concurrency)
            # Those holding the most long jobs go first, so the grace ends
            # on running jobs whichever worker the claims landed on.
            order = sorted(
                range(workers_n), key=lambda i: -holders.get(group.procs[i].pid, 0)
            )
            for index in order:
                exits.append(group.terminate_and_restart(index))
                scenarios.wait_ready(url, workers_n)
                time.sleep(pause)
                code, problems = _health(url, group.env)
                samples += 1
                lies += _health_lies(url, code, problems, final=False)
        scenarios.wait_finished(url, ids, timeout=600, during=group.check_alive)
        final_health = _health(url, group.env)
    result.jobs = len(ids)
    scenarios.count(url, result, ids)
    _interruption_aware_counts(url, result, ids)
    lies += _health_lies(url, *final_health, final=True, lost=result.lost)
    slow = [t for t in exits if t > GRACE + EXIT_MARGIN]
    result.notes.append(
        f"{len(exits)} SIGTERMs; exit after {max(exits):.1f} s at most"
        f" (grace {GRACE:g} s + margin {EXIT_MARGIN:g} s)"
    )
    if slow:
        result.errors += len(slow)
        result.notes.append(f"{len(slow)} worker(s) outlived grace + margin: {slow}")
    result.health_truthful = not lies
    result.notes.append(f"health sampled {samples + 1} times")
    if lies:
        result.notes.append(
            f"health said {len(lies)} untrue thing(s), first: {lies[0]}"
        )
    errors = group.error_lines()
    result.errors += len(errors) + len(group.exited)
    if errors:
        result.notes.append(f"first error line: {errors[0][:200]}")
    if group.exited:
        result.notes.append(f"workers exited non-zero: {group.exited}")
    result.seconds = round(time.monotonic() - began, 1)
    return result
