"""Limits across real worker processes: from the start and end times each
run records, no limit is exceeded in any window and no job is lost."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

from faults.limits import JITTER_S, enqueue, most_in_window, most_overlapping
from tests.support import rows, wait_for
from tests.support.apps import limits as limits_app

APP = "tests.support.apps.limits.app"


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
