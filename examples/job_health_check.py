"""Job health check: flag a scheduled job that stopped running.

Every schedule and periodic task has an expected interval (derived from its
cron, overridable). ``pgjobs.periodic_health`` says which ones have had no
success within that interval plus a grace period. A health-check task runs
every 5 minutes, reads the view and alerts on each overdue job; from a shell
the same check is ``pgjobs schedules health`` (exit 1 when overdue) or plain
SQL: ``SELECT name, last_success_at FROM pgjobs.periodic_health WHERE overdue``.

    python -m examples.job_health_check
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from pgjobs import App, ScheduleNotFound, database, schedules, schema

app = App()
log = logging.getLogger("examples.job_health_check")
alerts: dict[str, str] = {}  # stands in for Slack / PagerDuty


def alert(key: str, message: str) -> None:
    """Alert once per incident: a second check finding the same job overdue
    (the worker's own */5 run and the demo's manual run may both happen)
    does not page again."""
    if key not in alerts:
        alerts[key] = message
        log.error(message)


@app.task(name="examples.export_orders", queue="health-demo")
def export_orders() -> None:
    pass  # the nightly export


@app.task(name="examples.sync_prices", queue="health-demo")
def sync_prices() -> None:
    pass  # the hourly price sync


@app.periodic(cron="*/5 * * * *")
@app.task(name="examples.job_health_check", queue="health-demo")
def job_health_check(timestamp: int) -> list[str]:
    flagged = []
    for row in schedules.overdue(app.settings):
        since = row.last_success_at or "never"
        alert(
            row.name,
            f"{row.name} ({row.task_name}) is overdue: last success {since}, "
            f"expected every {row.expected_interval}",
        )
        flagged.append(row.name)
    return flagged


async def run_jobs() -> None:
    async with app.open_async():
        await app.run_worker_async(
            queues=["health-demo"], wait=False, install_signal_handlers=False
        )


def main() -> list[dict[str, Any]]:
    schema.upgrade(app.settings)
    settings = app.settings
    for name in ("nightly-export", "hourly-prices"):
        with contextlib.suppress(ScheduleNotFound):
            schedules.remove_schedule(settings, name)
    schedules.add_schedule(
        settings, app, "nightly-export", export_orders, cron="0 2 * * *"
    )
    schedules.add_schedule(
        settings, app, "hourly-prices", sync_prices, cron="0 * * * *"
    )
    # Both ran fine once...
    schedules.run_schedule(settings, "nightly-export")
    schedules.run_schedule(settings, "hourly-prices")
    asyncio.run(run_jobs())
    # ...then the export stopped running: pretend its last success was two
    # days ago (in production, time does this for you).
    with database.connect(settings) as conn:
        conn.execute(
            "UPDATE pgjobs.schedules SET last_success_at = now() - interval '2 days',"
            " active_since = now() - interval '30 days' WHERE name = 'nightly-export'"
        )
        conn.commit()
        app.enqueue(conn, job_health_check, {"timestamp": 0})
        conn.commit()
    asyncio.run(run_jobs())
    report = []
    for row in schedules.periodic_health(settings):
        if row.name in ("nightly-export", "hourly-prices"):
            status = "OVERDUE" if row.overdue else "ok"
            print(f"{row.name}: {status} (expected every {row.expected_interval})")
            report.append({"name": row.name, "overdue": row.overdue})
    print(f"{len(alerts)} alert(s) sent")
    return report


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    main()
