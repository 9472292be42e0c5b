"""What the tests share besides fixtures (those are in ``tests/conftest.py``):
the project root, the CLI in a subprocess, waiting on the database, in-process
workers, examples. ``apps`` holds the Apps the tests run, ``factories`` seeds
rows for the monitoring views, ``django`` runs the example Django project."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs import App

ROOT = Path(__file__).resolve().parent.parent.parent


def cli_env(db_url: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGJOBS_")}
    if db_url:
        env["PGJOBS_DATABASE_URL"] = db_url
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def run_cli(
    *args: str,
    db_url: str | None,
    cwd: Path | None = None,
    timeout: float = 60,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """Run the real ``pgjobs`` command line in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "pgjobs", *args],
        env=cli_env(db_url, **env),
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def run_worker(app: App, **options: Any) -> None:
    """Run an in-process worker until no job is ready to run.

    One job at a time by default: with more, a wait=False worker stops as soon
    as a fetch finds nothing, even while a job that will be retried now runs.
    """
    options.setdefault("concurrency", 1)
    async with app.open_async():
        await app.run_worker_async(wait=False, install_signal_handlers=False, **options)


def one(conn: psycopg.Connection[Any], query: str, *params: Any) -> Any:
    row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
    return None if row is None else (row[0] if len(row) == 1 else row)


def wait_for(
    predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition"
) -> Any:
    """Poll ``predicate`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def run_example(module: str, db_url: str) -> str:
    """Run ``python -m module`` on ``db_url``; it must exit 0. Returns stdout."""
    result = subprocess.run(
        [sys.executable, "-m", module],
        env=cli_env(db_url),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def rows(db_url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(query).fetchall()  # type: ignore[arg-type]


def need_pgbouncer() -> None:
    """Skip without pgbouncer; fail when ``PGJOBS_TEST_REQUIRE_PGBOUNCER=1``."""
    from faults import pgbouncer

    if pgbouncer.binary() is None:
        if os.environ.get("PGJOBS_TEST_REQUIRE_PGBOUNCER") == "1":
            pytest.fail("pgbouncer is required (PGJOBS_TEST_REQUIRE_PGBOUNCER=1)")
        pytest.skip("pgbouncer is not installed")
