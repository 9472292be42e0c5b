"""The App of the deploy tests (``--app tests.support.apps.deploys.app``): long jobs.

Every run inserts a ``deploy_runs`` row when it starts and stamps
``ended_at`` when its code returns, so tests see from the database which
runs were interrupted and which ran to the end.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import psycopg

from pgjobs import App, RetryPolicy

app = App()

RUNS_TABLE = """
CREATE TABLE IF NOT EXISTS deploy_runs (
    id bigserial PRIMARY KEY,
    job_id bigint NOT NULL,
    key text NOT NULL,
    attempt integer NOT NULL,
    pid integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    ended_at timestamptz
)
"""
_START = (
    "INSERT INTO deploy_runs (job_id, key, attempt, pid)"
    " VALUES (%s, %s, %s, %s) RETURNING id,"
    " (SELECT count(*) FROM deploy_runs WHERE job_id = %s)"
)
_END = "UPDATE deploy_runs SET ended_at = clock_timestamp() WHERE id = %s"

#: Retried at once, twice at most: a policy the interruptions must not use up.
POLICY = RetryPolicy(max_attempts=2, base_delay=0.0, jitter="none")


def _url() -> str:
    assert app.settings.database_url, (
        "tests.support.apps.deploys needs PGJOBS_DATABASE_URL"
    )
    return app.settings.database_url


def _start(context: Any, key: str) -> tuple[int, int]:
    job = context.job
    with psycopg.connect(_url(), autocommit=True) as conn:
        row = conn.execute(
            _START, (job.id, key, job.attempts + 1, os.getpid(), job.id)
        ).fetchone()
    assert row is not None
    return row[0], row[1]


def _end(run_id: int) -> None:
    with psycopg.connect(_url(), autocommit=True) as conn:
        conn.execute(_END, (run_id,))


@app.task(name="deploys.slow_async", pass_context=True, retry=POLICY)
async def slow_async(
    context: Any, key: str, sleep: float = 5.0, then: float | None = None
) -> None:
    """Sleeps ``sleep`` s on its first run, ``then`` s (default: the same)
    on the later ones."""
    run_id, earlier = await asyncio.to_thread(_start, context, key)
    await asyncio.sleep(sleep if not earlier or then is None else then)
    await asyncio.to_thread(_end, run_id)


@app.task(name="deploys.slow_sync", pass_context=True, retry=POLICY)
def slow_sync(
    context: Any, key: str, sleep: float = 5.0, then: float | None = None
) -> None:
    run_id, earlier = _start(context, key)
    time.sleep(sleep if not earlier or then is None else then)
    _end(run_id)
