"""Stalled jobs: rescue the running jobs of workers that died.

Every worker sends a heartbeat to ``procrastinate_workers`` every
``PGJOBS_HEARTBEAT_INTERVAL`` seconds. Every ``PGJOBS_STALLED_CHECK_INTERVAL``
seconds each worker looks for jobs still 'doing' whose worker row is gone or
has not beaten for ``PGJOBS_STALLED_AFTER`` seconds, and fails their attempt
with a ``WorkerLost`` error: the job is retried by its task's retry policy, or
dead-lettered when its attempts are spent. A job the lost worker had only
prefetched (claimed, never started: see pgjobs.job_worker) goes back to the
queue with no attempt counted. The rescue of one job is one SQL
call that re-checks the job under ``FOR UPDATE SKIP LOCKED``, so two workers
never rescue the same job twice.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from procrastinate import jobs as procrastinate_jobs

from pgjobs import dead_letters, queries, resilience, retries

if TYPE_CHECKING:
    from pgjobs.app import App
    from pgjobs.job_worker import Worker

logger = logging.getLogger(__name__)


class WorkerLost(Exception):
    """The worker running the job stopped sending heartbeats (crash, SIGKILL)."""


@dataclass(frozen=True)
class RescuedJob:
    job_id: int
    task_name: str
    #: 'todo' (will be retried), 'failed' (dead-lettered) or 'released'
    #: (prefetched by the lost worker and never started: no attempt counted).
    status: str
    dead_letter_id: int | None


async def rescue_stalled_jobs(
    app: App, *, stalled_after: float, limit: int = 100
) -> list[RescuedJob]:
    """Rescue the stalled jobs found now; returns what was done to each."""
    connector = app.connector
    interval = datetime.timedelta(seconds=stalled_after)
    rows = await connector.execute_query_all_async(
        query=queries.query("failures_stalled_jobs"),
        stalled_after=interval,
        limit=limit,
    )
    rescued: list[RescuedJob] = []
    for row in rows:
        job = procrastinate_jobs.Job.from_row(row)
        assert job.id is not None
        task = app.tasks.get(job.task_name)
        error = WorkerLost(
            f"worker {job.worker_id} stopped sending heartbeats while running "
            f"job {job.id}"
            if job.worker_id is not None
            else f"the worker running job {job.id} is gone"
        )
        job_retry = retries.decide(getattr(task, "retry_strategy", None), error, job)
        decision = job_retry.retry_decision if job_retry is not None else None
        result: dict[str, Any] = await connector.execute_query_one_async(
            query=queries.query("failures_fail_job_attempt"),
            job_id=job.id,
            error_type=type(error).__qualname__,
            error_message=str(error),
            traceback=None,
            retry_at=(decision.retry_at or datetime.datetime.now(datetime.UTC))
            if decision is not None
            else None,
            priority=decision.priority if decision is not None else None,
            queue=decision.queue if decision is not None else None,
            lock=decision.lock if decision is not None else None,
            delete_job=False,
            stalled_after=interval,
        )
        if not result["applied"]:
            continue  # another worker rescued it, or it is alive after all
        rescued.append(
            RescuedJob(
                job_id=job.id,
                task_name=job.task_name,
                status=result["status"],
                dead_letter_id=result["dead_letter_id"],
            )
        )
        if result["status"] == "released":
            logger.info(
                f"put back job {job.id} ({job.task_name}): its lost worker had "
                "prefetched it and never started it (no attempt counted)",
                extra={
                    "action": "stalled_job_released",
                    "job_id": job.id,
                    "task_name": job.task_name,
                    "lost_worker_id": job.worker_id,
                },
            )
            continue
        logger.warning(
            f"rescued job {job.id} ({job.task_name}) of a lost worker: "
            + ("retrying" if result["status"] == "todo" else "dead-lettered"),
            extra={
                "action": "stalled_job_rescued",
                "job_id": job.id,
                "task_name": job.task_name,
                "lost_worker_id": job.worker_id,
                "status": result["status"],
            },
        )
        if result["dead_letter_id"] is not None:
            await dead_letters.alert(
                connector,
                getattr(app, "on_dead_letter", None),
                result["dead_letter_id"],
            )
    return rescued


async def stalled_job_rescuer(worker: Worker) -> None:
    """Worker side task: look for stalled jobs at a steady pace, forever."""
    app: App = worker.app  # type: ignore[assignment]
    settings = app.settings
    while True:
        await asyncio.sleep(settings.stalled_check_interval)
        outage = getattr(worker, "outage", None)
        if outage is not None and not outage.settled(settings.stalled_after):
            # Right after a database outage every worker's heartbeat looks
            # old: give the live ones one stall period to beat again first.
            continue
        try:
            await rescue_stalled_jobs(app, stalled_after=settings.stalled_after)
        except Exception as exc:
            if resilience.is_connection_error(exc):
                raise  # the worker retries the side task (one log line per outage)
            logger.exception(
                "looking for stalled jobs failed; trying again later",
                extra={"action": "stalled_job_rescue_error"},
            )
