"""The App of the flow-control tests (``--app tests.support.apps.flow.app``).

Every run inserts a ``flow_runs`` row when it starts and stamps ``ended_at``
when its code returns, so tests see from the database what started when.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

from pgjobs import App

app = App()

RUNS_TABLE = """
CREATE TABLE IF NOT EXISTS flow_runs (
    id bigserial PRIMARY KEY,
    job_id bigint NOT NULL,
    queue_name text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    ended_at timestamptz
)
"""


def _url() -> str:
    assert app.settings.database_url, (
        "tests.support.apps.flow needs PGJOBS_DATABASE_URL"
    )
    return app.settings.database_url


@app.task(name="flow.work", pass_context=True)
async def work(context: Any, seconds: float = 0.0) -> None:
    job = context.job
    async with await psycopg.AsyncConnection.connect(_url(), autocommit=True) as conn:
        cursor = await conn.execute(
            "INSERT INTO flow_runs (job_id, queue_name) VALUES (%s, %s) RETURNING id",
            (job.id, job.queue),
        )
        row = await cursor.fetchone()
        assert row is not None
        await asyncio.sleep(seconds)
        await conn.execute(
            "UPDATE flow_runs SET ended_at = clock_timestamp() WHERE id = %s",
            (row[0],),
        )
