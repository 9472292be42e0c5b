"""Stalled jobs: rescue the running jobs of workers that died.

Every worker sends a heartbeat to ``procrastinate_workers`` every
``PGJOBS_HEARTBEAT_INTERVAL`` seconds. Every ``PGJOBS_STALLED_CHECK_INTERVAL``
seconds each worker looks for jobs still 'doing' whose worker row is gone or
has not beaten for ``PGJOBS_STALLED_AFTER`` seconds, and fails their attempt
with a ``WorkerLost`` error: the job is retried by its task's retry policy, or
dead-lettered when its attempts are spent. A job the lost worker had only
prefetched (claimed, never started: see pgjobs.worker.worker) goes back to the
queue with no attempt counted. The rescue of one job is one SQL
call that re-checks the job under ``FOR UPDATE SKIP LOCKED``, so two workers
never rescue the same job twice.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from procrastinate import connector as procrastinate_connector
from procrastinate import jobs as procrastinate_jobs

from pgjobs.db import queries
from pgjobs.failures import dead_letters, retries
from pgjobs.settings import Settings
from pgjobs.worker import outages

logger = logging.getLogger("pgjobs.stalled")


class RescueHost(Protocol):
    """What the rescue needs of its App: the database, the tasks (for their
    retry policies) and the dead-letter hook."""

    @property
    def connector(self) -> procrastinate_connector.BaseConnector: ...

    @property
    def tasks(self) -> Mapping[str, Any]: ...

    @property
    def on_dead_letter(self) -> dead_letters.DeadLetterHook | None: ...


class _Running(Protocol):
    """The worker a rescuer runs beside: it knows its database outages."""

    @property
    def outage(self) -> outages.Outage: ...


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
    app: RescueHost, *, stalled_after: float, limit: int = 100
) -> list[RescuedJob]:
    """Rescue the stalled jobs found now; returns what was done to each."""
    connector = app.connector
    interval = datetime.timedelta(seconds=stalled_after)
    rows = await connector.execute_query_all_async(
        query=queries.query("stalled_jobs"),
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
            query=queries.query("retries_fail_job_attempt"),
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
                app.on_dead_letter,
                result["dead_letter_id"],
            )
    return rescued


def rescuer(
    host: RescueHost, settings: Settings
) -> Callable[[_Running], Awaitable[None]]:
    """The worker side task that looks for stalled jobs at a steady pace."""

    async def stalled_job_rescuer(worker: _Running) -> None:
        while True:
            await asyncio.sleep(settings.stalled_check_interval)
            if not worker.outage.settled(settings.stalled_after):
                # Right after a database outage every worker's heartbeat looks
                # old: give the live ones one stall period to beat again first.
                continue
            try:
                await rescue_stalled_jobs(host, stalled_after=settings.stalled_after)
            except Exception as exc:
                if outages.is_connection_error(exc):
                    raise  # the worker retries the side task (one line per outage)
                logger.exception(
                    "looking for stalled jobs failed; trying again later",
                    extra={"action": "stalled_job_rescue_error"},
                )

    return stalled_job_rescuer
