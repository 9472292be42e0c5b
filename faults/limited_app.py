"""The App of the limits fault scenario (``faults/limits.py``): tasks with
fleet-wide limits that record every execution in ``fault_limit_runs``.

Apart from ``faults.app`` on purpose: a declared limit moves every claim of
the database to the limited branch of ``pgjobs.fetch_jobs``, which the other
scenarios must not measure.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pgjobs import App, RetryPolicy

app = App()

#: The limits the scenario checks the recorded runs against.
RATE, PER_TENANT, CAPPED = 40, 2, 5

SETUP_SQL = """
CREATE TABLE IF NOT EXISTS fault_limit_runs (
    id bigserial PRIMARY KEY,
    job_id bigint NOT NULL,
    task_name text NOT NULL,
    tenant text,
    ms integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    ended_at timestamptz
);
"""
_START = """
INSERT INTO fault_limit_runs (job_id, task_name, tenant, ms)
VALUES (%(job_id)s, %(task_name)s, %(tenant)s, %(ms)s)
RETURNING id
"""
_END = "UPDATE fault_limit_runs SET ended_at = clock_timestamp() WHERE id = %(run_id)s"
_RETRY = RetryPolicy(max_attempts=50, base_delay=0.05, max_delay=1.0)


async def _run(context: Any, task_name: str, tenant: str | None, ms: int) -> None:
    connector = context.app.connector
    row = await connector.execute_query_one_async(
        query=_START, job_id=context.job.id, task_name=task_name, tenant=tenant, ms=ms
    )
    await asyncio.sleep(ms / 1000)
    await connector.execute_query_async(query=_END, run_id=row["id"])


@app.task(
    name="faults.limited",
    pass_context=True,
    retry=_RETRY,
    rate_limit=f"{RATE}/s",
    limit_key="tenant",
    key_concurrency_limit=PER_TENANT,
)
async def limited(context: Any, n: int, tenant: str, ms: int = 0) -> None:
    await _run(context, "faults.limited", tenant, ms)


@app.task(
    name="faults.capped", pass_context=True, retry=_RETRY, concurrency_limit=CAPPED
)
async def capped(context: Any, n: int, ms: int = 0) -> None:
    await _run(context, "faults.capped", None, ms)
