"""Fault scenarios of poolers and connection budgets.

- ``pooler``: 4 enqueuers and 3 workers, all through transaction-mode
  PgBouncer (``faults.pgbouncer``), one worker SIGKILLed every few seconds;
  nothing lost, nothing stuck, no prepared-statement error, no LISTEN left
  on a pooled server connection.
- ``shortage``: a server at ``max_connections`` when the workers start;
  they must wait (a WARNING), then run every job once slots free.

Both check ``pgjobs health --json`` during and after the run against the
facts in the tables (``health_truthful``).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import psycopg

from faults import scenarios
from faults.app import app
from faults.cluster import Cluster
from faults.pgbouncer import PgBouncer
from pgjobs.db import connections

#: The slots of the shortage scenario's server (superusers get no reserve).
SHORTAGE_MAX_CONNECTIONS = 20


# -- health, checked against the facts -----------------------------------------


def health(url: str) -> tuple[int, list[dict[str, Any]]]:
    """``pgjobs health --json`` on ``url``: exit status and problems."""
    proc = subprocess.run(
        [sys.executable, "-m", "pgjobs", "health", "--json"],
        env={**_cli_env(), "PGJOBS_DATABASE_URL": url},
        cwd=scenarios.ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    problems = json.loads(proc.stdout) if proc.returncode in (0, 1) else []
    return proc.returncode, problems


def _cli_env() -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("PGJOBS_")}
    env["PYTHONPATH"] = str(scenarios.ROOT)
    env["PGJOBS_LOG_LEVEL"] = "WARNING"
    return env


class HealthWatch:
    """Samples ``pgjobs health`` during a run and judges each answer.

    A ``stalled_job`` row is true when its job has an unfinished run by a
    worker this suite killed (or no run yet: claimed, then killed before
    its task began); a ``new_dead_letters`` row when dead letters exist; a
    failed check (exit 2+) is true only while the database is really out of
    reach (``unreachable_ok``). Any other row is a false alarm.
    """

    def __init__(self, health_url: str, facts_url: str) -> None:
        self.health_url = health_url
        self.facts_url = facts_url
        self.samples = 0
        self.false: list[str] = []
        self.seen: set[str] = set()

    def sample(self, killed: Sequence[int], unreachable_ok: bool = False) -> None:
        code, problems = health(self.health_url)
        self.samples += 1
        if code >= 2:
            if not unreachable_ok:
                self.false.append(f"health check failed (exit {code})")
            self.seen.add("check failed")
            return
        with psycopg.connect(self.facts_url) as conn:
            for problem in problems:
                self.seen.add(problem["check"])
                if not self._true(conn, problem, killed):
                    self.false.append(f"{problem['check']} {problem['subject']}")

    def _true(
        self,
        conn: psycopg.Connection[Any],
        problem: dict[str, Any],
        killed: Sequence[int],
    ) -> bool:
        if problem["check"] == "stalled_job":
            job_id = int(problem["subject"].removeprefix("job "))
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE ended_at IS NULL AND pid = ANY(%s)),"
                "       count(*)"
                "  FROM fault_runs WHERE job_id = %s",
                [list(killed), job_id],
            ).fetchone()
            assert row is not None
            interrupted, runs = row
            return bool(interrupted) or (runs == 0 and bool(killed))
        if problem["check"] == "new_dead_letters":
            row = conn.execute("SELECT count(*) FROM pgjobs.dead_letters").fetchone()
            return bool(row and row[0])
        return False

    def after(self, result: scenarios.Result) -> None:
        """Once the run is over: healthy exactly when nothing is stuck and
        nothing was dead-lettered."""
        code, problems = health(self.health_url)
        checks = {p["check"] for p in problems}
        expect_problems = result.stuck > 0 or result.dead_lettered > 0
        truthful = code in (0, 1) and (bool(problems) == expect_problems)
        if result.stuck and "stalled_job" not in checks:
            truthful = False
        result.health_truthful = truthful and not self.false
        said = "healthy" if code == 0 else f"exit {code}: {sorted(checks)}"
        result.notes.append(
            f"health during the run: {self.samples} samples, seen "
            f"{sorted(self.seen) or 'nothing'}, false: {self.false[:3] or 'none'};"
            f" after: {said}"
        )


# -- enqueuers through the pooler ------------------------------------------------


class Enqueuers:
    """``count`` threads enqueueing through ``url`` in small transactions of
    varying shapes, until ``total`` jobs are in; errors are collected."""

    def __init__(self, url: str, total: int, count: int = 4) -> None:
        self.ids: list[int] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        share = total // count
        self._threads = [
            threading.Thread(
                target=self._run, args=(url, k * share, share), daemon=True
            )
            for k in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def _run(self, url: str, first: int, share: int) -> None:
        n = first
        try:
            with connections.connect(url) as conn:
                while n < first + share:
                    size = min(1 + n % 3, first + share - n)
                    payloads = [{"n": n + i, "ms": 20} for i in range(size)]
                    got = app.enqueue_many(conn, "faults.work", payloads)
                    conn.commit()
                    with self._lock:
                        self.ids.extend(i for i in got if i is not None)
                    n += size
                    time.sleep(0.002)
        except Exception as exc:  # reported in the scenario's errors
            with self._lock:
                self.errors.append(f"{type(exc).__name__}: {str(exc)[:150]}")

    def join(self) -> list[int]:
        for thread in self._threads:
            thread.join()
        return self.ids


def _listening_on_pooled_servers(bouncer: PgBouncer) -> list[str]:
    """Channels the pooler's server connections LISTEN on (one open
    transaction per server connection, so each one is looked at)."""
    servers = max(1, len(bouncer.show("SERVERS")))
    conns = [
        psycopg.connect(bouncer.url, prepare_threshold=None) for _ in range(servers)
    ]
    try:
        return [
            row[0]
            for conn in conns
            for row in conn.execute("SELECT pg_listening_channels()").fetchall()
        ]
    finally:
        for conn in conns:
            conn.close()


# -- the scenarios -------------------------------------------------------------


def pooler(url: str, jobs: int = 5_000, kill_every: float = 3.0) -> scenarios.Result:
    """4 enqueuers and 3 workers through transaction-mode PgBouncer."""
    scenarios.prepare(url)
    result = scenarios.Result(
        f"PgBouncer transaction mode: 4 enqueuers, 3 workers, SIGKILL every "
        f"{kill_every:.0f} s",
        jobs,
    )
    began = time.monotonic()
    kills = 0
    with PgBouncer(url, mode="transaction", pool_size=20) as bouncer:
        watch = HealthWatch(bouncer.url, url)
        with scenarios.workers(
            bouncer.url, 3, 10, PGJOBS_POOL_SIZE="6", PGJOBS_POLL_INTERVAL="0.5"
        ) as group:
            enqueuers = Enqueuers(bouncer.url, jobs)
            next_kill = time.monotonic() + kill_every
            next_health = time.monotonic() + 1.0

            def during() -> None:
                nonlocal next_kill, next_health, kills
                now = time.monotonic()
                if now >= next_kill:
                    group.kill_and_restart(random.randrange(3))
                    kills += 1
                    next_kill = now + kill_every
                if now >= next_health:
                    watch.sample(group.killed)
                    next_health = time.monotonic() + 2.0
                group.check_alive()

            while any(t.is_alive() for t in enqueuers._threads):
                during()
                time.sleep(0.2)
            ids = enqueuers.join()
            scenarios.wait_finished(url, ids, timeout=600, during=during)
        result.jobs = len(ids) + len(enqueuers.errors)
        listening = _listening_on_pooled_servers(bouncer)
        scenarios._finish(result, url, ids, group, began)
        watch.after(result)  # through the pooler, as an operator's probe
    result.errors += len(enqueuers.errors)
    if enqueuers.errors:
        result.notes.append(f"enqueue errors: {enqueuers.errors[:3]}")
    if listening:
        result.errors += 1
        result.notes.append(f"LISTEN left on pooled server connections: {listening}")
    line = "LISTEN/NOTIFY does not reach this worker"
    per_start = [p.read_text().count(line) for p in sorted(group.logs.glob("*.log"))]
    result.notes.append(
        f"{kills} kills; {len(ids)} jobs enqueued through the pooler; polling "
        f"line logged by {sum(per_start)} of {len(per_start)} worker starts"
    )
    if max(per_start) > 1 or sum(per_start) == 0:
        result.errors += 1
    return result


def _hold_every_slot(url: str) -> list[psycopg.Connection[Any]]:
    held = []
    while True:
        try:
            held.append(psycopg.connect(url, autocommit=True, connect_timeout=5))
        except psycopg.OperationalError as exc:
            if "too many clients" not in str(exc):
                raise
            return held


def shortage(jobs: int = 1_000, hold: float = 5.0) -> scenarios.Result:
    """Two workers start while the server has no free connection slot; the
    slots free a few at a time ``hold`` s later."""
    cluster = Cluster()
    try:
        with psycopg.connect(cluster.url, autocommit=True) as conn:
            conn.execute(
                f"ALTER SYSTEM SET max_connections = {SHORTAGE_MAX_CONNECTIONS}"
            )
            conn.execute("ALTER SYSTEM SET superuser_reserved_connections = 0")
        cluster.stop()
        cluster.start()
        url = cluster.url
        scenarios.prepare(url)
        ids = scenarios.enqueue(url, jobs, ms=10)
        result = scenarios.Result(
            f"connection shortage at start ({SHORTAGE_MAX_CONNECTIONS} slots, "
            f"all taken for {hold:.0f} s)",
            len(ids),
        )
        began = time.monotonic()
        held = _hold_every_slot(url)
        watch = HealthWatch(url, url)
        with scenarios.workers(url, 2, 10, PGJOBS_POOL_SIZE="6") as group:
            time.sleep(hold)
            # No slot: health cannot check, and must say so (exit 2+).
            code, _ = health(url)
            watch.samples += 1
            if code < 2:
                watch.false.append(f"health exit {code} with no free slot")
            waited = group.log_text().count("no free connection slot")
            alive = sum(proc.poll() is None for proc in group.procs)
            watch_conn = held.pop()
            while held:  # a few slots at a time
                for conn in held[-4:]:
                    conn.close()
                del held[-4:]
                time.sleep(1.0)
            watch_conn.close()
            scenarios.wait_finished(url, ids, timeout=300, during=group.check_alive)
            watch.sample(group.killed)
        result.notes.append(
            f"{waited} shortage WARNING(s) for 2 workers; {alive} of 2 alive while "
            "waiting"
        )
        if waited < 2 or alive != 2:
            result.errors += 1
        scenarios._finish(result, url, ids, group, began)
        watch.after(result)
        return result
    finally:
        cluster.close()
