"""Apps for schedule tests that run real worker processes.

- ``tests.support.apps.schedules.app``: tasks for runtime schedules;
- ``tests.support.apps.schedules.cron_app``: a per-second ``@app.periodic`` task, an
  ``every()`` task and a run-once-after-start task.

Every run inserts a row in ``schedule_test_runs`` so tests count runs from
the database.
"""

from __future__ import annotations

import psycopg

from pgjobs import App, schedules

RUNS_TABLE = """
CREATE TABLE IF NOT EXISTS schedule_test_runs (
    id bigserial PRIMARY KEY,
    key text NOT NULL,
    tick bigint,
    ran_at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""

# Workers notice jobs via NOTIFY; the short poll only matters for delayed jobs.
app = App(worker_defaults={"fetch_job_polling_interval": 0.2})
cron_app = App(worker_defaults={"fetch_job_polling_interval": 0.2})


def _record(target: App, key: str, tick: int | None = None) -> None:
    assert target.settings.database_url, (
        "tests.support.apps.schedules needs a database URL"
    )
    with psycopg.connect(target.settings.database_url) as conn:
        conn.execute(
            "INSERT INTO schedule_test_runs (key, tick) VALUES (%s, %s)", (key, tick)
        )


@app.task(name="sched.record")
def record(key: str) -> None:
    _record(app, key)


@app.task(name="sched.fail")
def fail(reason: str = "boom") -> None:
    raise RuntimeError(reason)


@cron_app.periodic(cron="* * * * * *")
@cron_app.task(name="sched.every_second")
def every_second(timestamp: int) -> None:
    _record(cron_app, "cron", timestamp)


@schedules.every(cron_app, 2)
@cron_app.task(name="sched.every_two_seconds")
def every_two_seconds(timestamp: int) -> None:
    _record(cron_app, "every2", timestamp)


@schedules.after_start(cron_app, delay=0.5)
@cron_app.task(name="sched.warm_up")
def warm_up() -> None:
    _record(cron_app, "startup")
