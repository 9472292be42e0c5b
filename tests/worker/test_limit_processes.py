"""Limits across real worker processes: from the start and end times each
run records, no limit is exceeded in any window and no job is lost."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tests.support import rows, wait_for
from tests.support.apps import limits as limits_app

APP = "tests.support.apps.limits.app"
# Starting a job after its claim takes a few ms (more on a busy machine);
# the recorded start is taken in the job's own code, so a window is checked
# this much shorter (a fixed window's 2N burst across its boundary would
# still show: it fits in a few ms).
JITTER_S = 0.2


def enqueue(url: str, task: str, args: list[dict[str, Any]]) -> list[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        return [
            row[0]
            for row in conn.execute(
                "INSERT INTO procrastinate_jobs (queue_name, task_name, args)"
                " SELECT 'default', %s, a FROM unnest(%s::jsonb[]) AS a RETURNING id",
                (task, [json.dumps(a) for a in args]),
            ).fetchall()
        ]


def most_in_window(starts: list[float], window: float) -> int:
    starts = sorted(starts)
    return max(
        (
            len([s for s in starts[i:] if s < at + window])
            for i, at in enumerate(starts)
        ),
        default=0,
    )


def most_overlapping(spans: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_two_workers_never_exceed_the_limits_and_lose_nothing(
    runs_db: str, worker_processes: Callable[..., subprocess.Popen[bytes]]
) -> None:
    for name in ("w1", "w2"):
        worker_processes("--app", APP, "-c", "4", "--name", name)
    tenants = ["a"] * 8 + ["b"] * 4 + ["c"] * 3
    api = enqueue(runs_db, "limits.call_api", [{"tenant_id": t} for t in tenants])
    capped = enqueue(runs_db, "limits.capped", [{} for _ in range(12)])
    every = api + capped
    wait_for(
        lambda: (
            rows(
                runs_db,
                "SELECT count(*) FROM procrastinate_jobs"
                f" WHERE id = ANY(ARRAY{every}) AND status = 'succeeded'",
            )
            == [(len(every),)]
        ),
        timeout=60,
        what="every job to succeed",
    )
    runs = rows(
        runs_db,
        "SELECT job_id, task_name, tenant, extract(epoch FROM started_at)::float8,"
        " extract(epoch FROM ended_at)::float8 FROM limit_runs",
    )
    # Nothing lost, nothing run twice.
    assert sorted(run[0] for run in runs) == sorted(every)
    api_runs = [run for run in runs if run[1] == "limits.call_api"]
    starts = [run[3] for run in api_runs]
    window = limits_app.RATE_PERIOD_S - JITTER_S
    assert most_in_window(starts, window) <= limits_app.RATE
    for tenant in "abc":
        spans = [(run[3], run[4]) for run in api_runs if run[2] == tenant]
        assert most_overlapping(spans) <= limits_app.PER_TENANT, tenant
    capped_spans = [(run[3], run[4]) for run in runs if run[1] == "limits.capped"]
    assert most_overlapping(capped_spans) == limits_app.CAPPED
    # Held-back jobs started as soon as the limit allowed, without polling
    # (the workers poll every 5 s): 15 starts at 5 per s take 2 s and a bit.
    took = max(starts) - min(starts)
    assert 2 - JITTER_S <= took < 4.0, took
