"""An App for failure-handling tests that run real worker processes.

``--app tests.support.apps.failures.app``. Tasks record each finished run in
``test_runs`` (see tests.support.apps.records) so tests count runs from the database.
"""

from __future__ import annotations

import time

from procrastinate import JobContext

from pgjobs import App, RetryPolicy
from tests.support.apps.records import RUNS_TABLE

__all__ = ["RUNS_TABLE", "app"]

# Retries are UPDATEs (no NOTIFY): poll often so tests see them quickly.
app = App(worker_defaults={"fetch_job_polling_interval": 0.2})
app.breaker("flaky-api", failure_threshold=2, recovery_window=300)


def _record(key: str, started: float) -> None:
    import psycopg

    assert app.settings.database_url, (
        "tests.support.apps.failures needs PGJOBS_DATABASE_URL"
    )
    with psycopg.connect(app.settings.database_url) as conn:
        conn.execute(
            "INSERT INTO test_runs (key, started_at) VALUES (%s, to_timestamp(%s))",
            (key, started),
        )


@app.task(
    name="failures.slow_first_attempt",
    pass_context=True,
    retry=RetryPolicy(max_attempts=3, base_delay=0, jitter="none"),
)
def slow_first_attempt(context: JobContext, key: str, sleep: float) -> None:
    """Sleeps ``sleep`` seconds on its first attempt only, then records a run."""
    started = time.time()
    if context.job.attempts == 0:
        time.sleep(sleep)
    _record(key, started)


@app.task(
    name="failures.flaky_api",
    breaker="flaky-api",
    retry=RetryPolicy(max_attempts=10, base_delay=0, jitter="none"),
)
def flaky_api(key: str) -> None:
    """A call to an API that is down: always raises ConnectionError."""
    raise ConnectionError(f"api down ({key})")
