"""``run_jobs``: run the waiting jobs on a real worker, in this process.

No in-memory queue: the App's own worker (middleware, retries, timeouts,
breakers, dead letters) runs against the test database until none of the
run's jobs is left waiting. Between rounds, the run's delayed jobs and
retries are made due now, so a task retried three times with a back-off of
minutes finishes in a moment, each attempt counted as in production.

The run's jobs are those waiting when it starts (in ``queues`` if given)
and every job enqueued while it runs (by a task, or a periodic tick).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg

from pgjobs.admin.jobs import get_job
from pgjobs.db import connections, queries
from pgjobs.db.connector import Connector
from pgjobs.failures.error_history import JobError
from pgjobs.settings import Settings

if TYPE_CHECKING:
    from pgjobs.app import App


@dataclass(frozen=True)
class JobOutcome:
    """How one job ended: ``status`` 'succeeded', 'failed', 'cancelled'..."""

    id: int
    task_name: str
    queue_name: str
    args: dict[str, Any]
    status: str
    attempts: int
    #: The last failed attempt as ``"Type: message"``, or None.
    error: str | None
    errors: list[JobError]

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


def _settings(app: App, target: Settings | str) -> Settings:
    if isinstance(target, Settings):
        return target
    if isinstance(target, str):
        return app.settings.model_copy(update={"database_url": target})
    raise TypeError(
        f"run_jobs needs a database URL or Settings, not a {type(target).__name__}: "
        "the worker uses connections of its own (commit the jobs first)"
    )


def _outcome(conn: psycopg.Connection[Any], job_id: int) -> JobOutcome:
    job = get_job(conn, job_id)
    last = job.last_error
    return JobOutcome(
        id=job.id,
        task_name=job.task_name,
        queue_name=job.queue_name,
        args=job.args,
        status=job.status,
        attempts=job.attempts,
        error=None if last is None else f"{last.error_type}: {last.error_message}",
        errors=job.errors,
    )


async def run_jobs_async(
    app: App,
    target: Settings | str,
    *,
    queues: list[str] | None = None,
    collapse_delays: bool = True,
    concurrency: int = 1,
    max_rounds: int = 100,
) -> list[JobOutcome]:
    """Run the waiting jobs (and those they enqueue) to completion.

    ``target``: the test database (URL, e.g. the ``pgjobs_db`` fixture, or
    Settings). ``collapse_delays=False`` leaves delayed jobs and retries
    waiting for their time. Returns one outcome per job of the run, in id
    order; raises ``AssertionError`` if jobs still wait after ``max_rounds``
    worker runs (e.g. a breaker that never closes).
    """
    settings = _settings(app, target)
    with connections.connection(settings) as conn:
        start = queries.fetch_one(conn, "testing_run_start", queues=queues)
        assert start is not None
        run = {"ids": start["waiting"], "last_id": start["last_id"], "queues": queues}
        worker_options: dict[str, Any] = {
            "wait": False,
            "install_signal_handlers": False,
            "concurrency": concurrency,
        }
        if queues:
            worker_options["queues"] = queues
        connector = Connector(settings)
        with app.replace_connector(connector):
            async with app.open_async():
                for _ in range(max_rounds):
                    waiting = queries.fetch_all(
                        conn, "testing_run_waiting", make_due=collapse_delays, **run
                    )
                    if not waiting:
                        break
                    await app.run_worker_async(**worker_options)
                    if not collapse_delays:
                        await asyncio.sleep(0.05)
                else:
                    ids = [row["id"] for row in waiting]
                    raise AssertionError(
                        f"jobs {ids} still waiting after {max_rounds} worker runs"
                    )
        rows = queries.fetch_all(conn, "testing_run_jobs", **run)
        return [_outcome(conn, row["id"]) for row in rows]


def run_jobs(
    app: App,
    target: Settings | str,
    *,
    queues: list[str] | None = None,
    collapse_delays: bool = True,
    concurrency: int = 1,
    max_rounds: int = 100,
) -> list[JobOutcome]:
    """``run_jobs_async`` from synchronous code (a plain test function)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "run_jobs called inside an event loop: await run_jobs_async(...) instead"
        )
    return asyncio.run(
        run_jobs_async(
            app,
            target,
            queues=queues,
            collapse_delays=collapse_delays,
            concurrency=concurrency,
            max_rounds=max_rounds,
        )
    )
