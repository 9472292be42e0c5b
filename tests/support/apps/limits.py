"""The App of the limits tests (``--app tests.support.apps.limits.app``).

Every run inserts a ``limit_runs`` row when it starts and stamps
``ended_at`` when its code returns, so tests check from the database that no
limit was exceeded in any window.
"""

from __future__ import annotations

import asyncio

import psycopg

from pgjobs import App

app = App()

RUNS_TABLE = """
CREATE TABLE IF NOT EXISTS limit_runs (
    id bigserial PRIMARY KEY,
    job_id bigint NOT NULL,
    task_name text NOT NULL,
    tenant text,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    ended_at timestamptz
)
"""

#: The figures the tests check against.
RATE, RATE_PERIOD_S, PER_TENANT, CAPPED = 5, 1.0, 2, 3


async def _record(task: str, tenant: str | None, job_id: int, seconds: float) -> None:
    url = app.settings.database_url
    assert url, "tests.support.apps.limits needs PGJOBS_DATABASE_URL"
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cursor = await conn.execute(
            "INSERT INTO limit_runs (job_id, task_name, tenant) VALUES (%s, %s, %s)"
            " RETURNING id",
            (job_id, task, tenant),
        )
        row = await cursor.fetchone()
        assert row is not None
        await asyncio.sleep(seconds)
        await conn.execute(
            "UPDATE limit_runs SET ended_at = clock_timestamp() WHERE id = %s",
            (row[0],),
        )


@app.task(
    name="limits.call_api",
    pass_context=True,
    rate_limit=f"{RATE}/s",
    limit_key="tenant_id",
    key_concurrency_limit=PER_TENANT,
)
async def call_api(context: object, tenant_id: str, seconds: float = 0.3) -> None:
    await _record("limits.call_api", tenant_id, context.job.id, seconds)  # type: ignore[attr-defined]


@app.task(name="limits.capped", pass_context=True, concurrency_limit=CAPPED)
async def capped(context: object, seconds: float = 0.2) -> None:
    await _record("limits.capped", None, context.job.id, seconds)  # type: ignore[attr-defined]
