"""The App the fault scenarios' workers run: tasks that record every execution.

Each run of ``faults.work`` inserts a row in ``fault_runs`` when it starts
and stamps ``ended_at`` when it ends, in the worker's own database session,
so the counts (lost jobs, duplicated runs, lock overlaps) come from the
database, not from logs. A run killed mid-way keeps ``ended_at`` NULL.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import psycopg

from pgjobs import App, RetryPolicy

app = App()

SETUP_SQL = """
CREATE TABLE IF NOT EXISTS fault_runs (
    id bigserial PRIMARY KEY,
    job_id bigint NOT NULL,
    n integer NOT NULL,
    lock text,
    priority integer NOT NULL,
    attempt integer NOT NULL,
    pid integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    ended_at timestamptz,
    -- enqueue -> start, when the enqueuer passed its clock (``sent``)
    latency_ms double precision
);
CREATE INDEX IF NOT EXISTS fault_runs_job_id_idx ON fault_runs (job_id);
"""
_START = """
INSERT INTO fault_runs (job_id, n, lock, priority, attempt, pid, latency_ms)
VALUES (%(job_id)s, %(n)s, %(lock)s, %(priority)s, %(attempt)s, %(pid)s,
        %(latency_ms)s)
RETURNING id
"""
_END = "UPDATE fault_runs SET ended_at = clock_timestamp() WHERE id = %(run_id)s"


@app.task(
    name="faults.work",
    pass_context=True,
    # Enough attempts to outlive any number of kills and outages in a scenario.
    retry=RetryPolicy(max_attempts=50, base_delay=0.05, max_delay=1.0),
)
async def work(context: Any, n: int, ms: int = 0, sent: float = 0.0) -> None:
    latency_ms = (time.time() - sent) * 1000 if sent else None
    job = context.job
    connector = context.app.connector
    row = await connector.execute_query_one_async(
        query=_START,
        job_id=job.id,
        n=n,
        lock=job.lock,
        priority=job.priority,
        attempt=job.attempts + 1,
        pid=os.getpid(),
        latency_ms=latency_ms,
    )
    if ms:
        await asyncio.sleep(ms / 1000)
    await connector.execute_query_async(query=_END, run_id=row["id"])


@app.task(
    name="faults.work_sync",
    pass_context=True,
    retry=RetryPolicy(max_attempts=50, base_delay=0.05, max_delay=1.0),
)
def work_sync(context: Any, n: int, ms: int = 0, sent: float = 0.0) -> None:
    """``faults.work`` as a sync task (its own connections, in its thread)."""
    latency_ms = (time.time() - sent) * 1000 if sent else None
    job = context.job
    url = app.settings.database_url
    with psycopg.connect(url, autocommit=True) as conn:  # type: ignore[arg-type]
        row = conn.execute(
            _START,
            {
                "job_id": job.id,
                "n": n,
                "lock": job.lock,
                "priority": job.priority,
                "attempt": job.attempts + 1,
                "pid": os.getpid(),
                "latency_ms": latency_ms,
            },
        ).fetchone()
    assert row is not None
    if ms:
        time.sleep(ms / 1000)
    with psycopg.connect(url, autocommit=True) as conn:  # type: ignore[arg-type]
        conn.execute(_END, {"run_id": row[0]})
