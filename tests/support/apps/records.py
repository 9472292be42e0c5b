"""An App for tests that run real worker processes (``--app tests.support.apps.records.app``).

Tasks record each execution in ``test_runs`` so tests count runs from the
database, not from logs.
"""

from __future__ import annotations

import time

import psycopg

from pgjobs import App

app = App()

RUNS_TABLE = """
CREATE TABLE IF NOT EXISTS test_runs (
    id bigserial PRIMARY KEY,
    key text NOT NULL,
    started_at timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""


def _record(key: str, started: float) -> None:
    assert app.settings.database_url, (
        "tests.support.apps.records needs PGJOBS_DATABASE_URL"
    )
    with psycopg.connect(app.settings.database_url) as conn:
        conn.execute(
            "INSERT INTO test_runs (key, started_at) VALUES (%s, to_timestamp(%s))",
            (key, started),
        )


@app.task(name="tests.record")
def record(key: str, sleep: float = 0.0) -> None:
    started = time.time()
    time.sleep(sleep)
    _record(key, started)
