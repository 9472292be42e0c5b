"""Small helpers shared by the test modules: waiting on the database, examples."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import psycopg

from tests.conftest import ROOT, cli_env


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
