"""Testing your jobs on a real database (no in-memory fake).

The pytest plugin (loaded automatically) provides the ``pgjobs_db`` fixture:
a fresh migrated database per test. With it:

- ``assert_enqueued(conn_or_url, task, **args)`` / ``enqueued_jobs(...)``:
  what your code enqueued;
- ``run_jobs(app, pgjobs_db)``: run the waiting jobs on a real worker in the
  test's process, retries and delays collapsed, and get their outcomes.
"""

from pgjobs.testing.assertions import (
    EnqueuedJob,
    assert_enqueued,
    assert_not_enqueued,
    enqueued_jobs,
)
from pgjobs.testing.runner import JobOutcome, run_jobs, run_jobs_async

__all__ = [
    "EnqueuedJob",
    "JobOutcome",
    "assert_enqueued",
    "assert_not_enqueued",
    "enqueued_jobs",
    "run_jobs",
    "run_jobs_async",
]
