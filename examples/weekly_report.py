"""Weekly report that degrades gracefully when optional data fails.

A cron task every Monday at 9:00 UTC (``0 9 * * 1``) builds a report from a
required section (job counts from Postgres: if that fails, the job fails and
is retried by its policy) and optional sections (an external analytics API,
the dead-letter summary). An optional section that fails is marked
"unavailable" with its error, and the report still goes out.

    python -m examples.weekly_report
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from pgjobs import App, RetryPolicy, database, schema

app = App()
log = logging.getLogger("examples.weekly_report")

SETUP = """
CREATE TABLE IF NOT EXISTS examples_weekly_reports (
    id bigserial PRIMARY KEY,
    week_of timestamptz NOT NULL,
    body jsonb NOT NULL
)
"""


def job_counts(conn: Any) -> dict[str, int]:
    """Required: jobs by status over the last 7 days."""
    rows = conn.execute(
        "SELECT status::text, count(*) FROM procrastinate_jobs j "
        "WHERE EXISTS (SELECT FROM procrastinate_events e WHERE e.job_id = j.id "
        "AND e.at > now() - interval '7 days') GROUP BY 1"
    ).fetchall()
    return {status: count for status, count in rows}


def dead_letter_summary(conn: Any) -> dict[str, int]:
    """Optional: new dead letters per task this week."""
    rows = conn.execute(
        "SELECT task_name, count(*) FROM pgjobs.dead_letters "
        "WHERE created_at > now() - interval '7 days' GROUP BY 1"
    ).fetchall()
    return {task: count for task, count in rows}


def analytics_visitors(conn: Any) -> dict[str, int]:
    """Optional: from an external API, which is down today."""
    raise ConnectionError("analytics.example.com: connection refused")


OPTIONAL: dict[str, Callable[[Any], dict[str, int]]] = {
    "dead_letters": dead_letter_summary,
    "visitors": analytics_visitors,
}


@app.periodic(cron="0 9 * * 1")  # Mondays at 9:00 UTC
@app.task(
    name="examples.weekly_report",
    queue="reports",
    timeout=600,
    retry=RetryPolicy(max_attempts=1),  # reports: one attempt, then dead letter
)
def weekly_report(timestamp: int) -> None:
    with database.connect(app.settings) as conn:
        body: dict[str, Any] = {"jobs": job_counts(conn), "unavailable": {}}
        for name, section in OPTIONAL.items():
            try:
                with conn.transaction():  # a failed query must not end the report
                    body[name] = section(conn)
            except Exception as exc:
                body["unavailable"][name] = f"{type(exc).__name__}: {exc}"
                log.warning("weekly report: section %s unavailable: %s", name, exc)
        conn.execute(
            "INSERT INTO examples_weekly_reports (week_of, body) "
            "VALUES (to_timestamp(%s), %s)",
            (timestamp, json.dumps(body)),
        )
        conn.commit()


def main() -> dict[str, Any]:
    schema.upgrade(app.settings)
    with database.connect(app.settings) as conn:
        conn.execute(SETUP)
        app.enqueue(conn, weekly_report, {"timestamp": int(time.time())})
        conn.commit()

    async def run_once() -> None:
        async with app.open_async():
            await app.run_worker_async(
                queues=["reports"], wait=False, install_signal_handlers=False
            )

    asyncio.run(run_once())
    with database.connect(app.settings) as conn:
        row = conn.execute(
            "SELECT body FROM examples_weekly_reports ORDER BY id DESC LIMIT 1"
        ).fetchone()
    assert row is not None
    body: dict[str, Any] = row[0]
    print(f"jobs this week: {body['jobs']}")
    for name in OPTIONAL:
        if name in body:
            print(f"{name}: {body[name]}")
        else:
            print(f"{name}: unavailable ({body['unavailable'][name]})")
    return body


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    main()
