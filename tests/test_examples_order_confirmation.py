from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.support import ROOT, cli_env

pytestmark = pytest.mark.slow


def test_order_confirmation_example(db_url: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "examples.order_confirmation", "--orders", "4"],
        env=cli_env(db_url),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "orders: 4, confirmations sent: 4" in result.stdout
    with psycopg.connect(db_url) as conn:
        jobs = conn.execute(
            "SELECT status::text, count(*) FROM procrastinate_jobs GROUP BY 1"
        ).fetchall()
        emails = conn.execute("SELECT email FROM example_orders ORDER BY id").fetchall()
    assert jobs == [("succeeded", 4)]  # the rolled-back order left no job
    assert ("never@example.com",) not in emails
