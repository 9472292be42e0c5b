"""procrastinate's JobManager, with pgjobs' enqueue path and the worker's hot path.

Every procrastinate-style defer (``task.defer()``, ``configure().defer()``,
``batch_defer``, with or without ``connection=``) goes through here, so it
gets the same payload validation and duplicate handling as ``App.enqueue``.

The worker (``pgjobs.job_worker``) claims and finishes jobs in batches here
(``fetch_jobs``, ``finish_jobs``); failures keep the per-job path below,
which writes the error row, the retry or final failure, and the dead letter
in one statement.
"""

from __future__ import annotations

import datetime
import logging
from typing import TYPE_CHECKING, Any

from procrastinate import jobs as procrastinate_jobs
from procrastinate import manager, types
from psycopg.types.json import Jsonb

from pgjobs import dead_letters, error_history, queries, resilience
from pgjobs.enqueue import as_is, check_duplicates
from pgjobs.tasks import Task

if TYPE_CHECKING:
    from procrastinate import app as procrastinate_app

logger = logging.getLogger("pgjobs.worker")


class JobManager(manager.JobManager):
    def __init__(self, app: procrastinate_app.App) -> None:
        super().__init__(connector=app.connector)
        self._app = app

    def _rows(self, jobs: list[procrastinate_jobs.Job]) -> list[types.JobToDefer]:
        rows = []
        for job in jobs:
            task = self._app.tasks.get(job.task_name)
            args = (
                Jsonb(task.payload.dump_json(job.task_kwargs), dumps=as_is)
                if isinstance(task, Task)
                else Jsonb(job.task_kwargs)
            )
            rows.append(
                types.JobToDefer(
                    queue_name=job.queue,
                    task_name=job.task_name,
                    priority=job.priority,
                    lock=job.lock,
                    queueing_lock=job.queueing_lock,
                    args=args,  # type: ignore[arg-type]
                    scheduled_at=job.scheduled_at,
                )
            )
        return rows

    def _finish(
        self,
        jobs: list[procrastinate_jobs.Job],
        rows: list[types.JobToDefer],
        results: list[dict[str, Any]],
    ) -> list[procrastinate_jobs.Job]:
        ids = check_duplicates(list(results[0]["ids"]), rows, "raise")
        return [
            job.evolve(id=job_id, status=procrastinate_jobs.Status.TODO.value)
            for job, job_id in zip(jobs, ids, strict=True)
        ]

    def batch_defer_jobs(
        self, jobs: list[procrastinate_jobs.Job], connection: Any | None = None
    ) -> list[procrastinate_jobs.Job]:
        rows = self._rows(jobs)
        connector = self.connector.get_sync_connector()
        query = queries.query("defer_jobs")
        with queries.translated_errors():
            if connection is not None:
                results = connector.execute_query_all_with_connection(
                    connection, query=query, jobs=rows
                )
            else:
                results = connector.execute_query_all(query=query, jobs=rows)
        return self._finish(jobs, rows, results)

    async def batch_defer_jobs_async(
        self, jobs: list[procrastinate_jobs.Job], connection: Any | None = None
    ) -> list[procrastinate_jobs.Job]:
        rows = self._rows(jobs)
        query = queries.query("defer_jobs")
        with queries.translated_errors():
            if connection is not None:
                results = await self.connector.execute_query_all_async_with_connection(
                    connection, query=query, jobs=rows
                )
            else:
                results = await self.connector.execute_query_all_async(
                    query=query, jobs=rows
                )
        return self._finish(jobs, rows, results)

    # -- the worker's hot path ---------------------------------------------

    async def fetch_jobs(
        self,
        queues: list[str] | None,
        worker_id: int,
        limit: int,
        start: int | None = None,
    ) -> list[procrastinate_jobs.Job]:
        """Claim up to ``limit`` jobs, in the order they must start; the
        first ``start`` (None: all) start now, the others are prefetched."""
        rows = await self.connector.execute_query_all_async(
            query=queries.query("worker_fetch_jobs"),
            queues=queues,
            worker_id=worker_id,
            limit=limit,
            start=start,
        )
        rows.sort(key=lambda row: (-row["priority"], row["id"]))
        return [procrastinate_jobs.Job.from_row(row) for row in rows]

    async def finish_jobs(
        self,
        finished: list[tuple[int, procrastinate_jobs.Status, bool]],
        started: list[int] | None = None,
    ) -> tuple[set[int], set[int]]:
        """Finish ``(job_id, status, delete_job)`` items in one statement,
        after writing the 'started' events of the prefetched jobs ``started``
        (those still 'doing').

        Returns (ids finished, ids whose 'started' event was written); a job
        no longer todo/doing is left alone.
        """
        rows = await self.connector.execute_query_all_async(
            query=queries.query("worker_finish_jobs"),
            ids=[job_id for job_id, _, _ in finished],
            statuses=[status.value for _, status, _ in finished],
            deletes=[delete for _, _, delete in finished],
            started=started or [],
        )
        return (
            {row["job"] for row in rows if not row["started"]},
            {row["job"] for row in rows if row["started"]},
        )

    async def release_unstarted_jobs(
        self, worker_id: int, running: list[int]
    ) -> list[int]:
        """Put back jobs claimed for ``worker_id`` that it is not running."""
        rows = await self.connector.execute_query_all_async(
            query=queries.query("worker_release_unstarted_jobs"),
            worker_id=worker_id,
            running=running,
        )
        return [row["id"] for row in rows]

    async def update_heartbeat(self, worker_id: int) -> None:
        # Re-creates the worker row if it was pruned during an outage.
        await self.connector.execute_query_async(
            query=queries.query("worker_heartbeat"), worker_id=worker_id
        )

    async def unregister_worker(self, worker_id: int) -> None:
        # At shutdown during an outage: leave the row; the other workers
        # prune it (and rescue its jobs) once its heartbeat is old.
        try:
            await super().unregister_worker(worker_id)
        except Exception as exc:
            if not resilience.is_connection_error(exc):
                raise
            logger.warning(
                "could not unregister worker %s: the database is unavailable",
                worker_id,
                extra={"action": "unregister_worker_failed", "worker_id": worker_id},
            )

    # -- failures: error row + retry/fail (+ dead letter) in one statement ----
    # The successful path stays procrastinate's own finish_job: no extra write.

    def _failure(self, job: procrastinate_jobs.Job) -> error_history.Failure:
        failure = error_history.take(job)
        if failure is None:
            known = job.task_name in self._app.tasks
            failure = error_history.unknown_failure(job, known)
        return failure

    async def _fail_attempt(
        self,
        job: procrastinate_jobs.Job,
        failure: error_history.Failure,
        *,
        retry_at: datetime.datetime | None,
        priority: int | None = None,
        queue: str | None = None,
        lock: str | None = None,
        delete_job: bool = False,
    ) -> None:
        row = await self.connector.execute_query_one_async(
            query=queries.query("failures_fail_job_attempt"),
            job_id=job.id,
            error_type=failure.error_type,
            error_message=failure.message,
            traceback=failure.traceback,
            retry_at=retry_at,
            priority=priority,
            queue=queue,
            lock=lock,
            delete_job=delete_job,
            stalled_after=None,
        )
        if row["dead_letter_id"] is not None:
            await dead_letters.alert(
                self.connector,
                getattr(self._app, "on_dead_letter", None),
                row["dead_letter_id"],
            )

    async def retry_job(
        self,
        job: procrastinate_jobs.Job,
        retry_at: datetime.datetime | None = None,
        priority: int | None = None,
        queue: str | None = None,
        lock: str | None = None,
    ) -> None:
        failure = self._failure(job)
        if failure.reschedule_at is not None:
            # Circuit breaker open: back to the queue, no attempt counted.
            await self.connector.execute_query_one_async(
                query=queries.query("failures_reschedule_job"),
                job_id=job.id,
                run_at=failure.reschedule_at,
            )
            return
        await self._fail_attempt(
            job,
            failure,
            retry_at=retry_at or datetime.datetime.now(datetime.UTC),
            priority=priority,
            queue=queue,
            lock=lock,
        )

    async def finish_job(
        self,
        job: procrastinate_jobs.Job,
        status: procrastinate_jobs.Status,
        delete_job: bool,
    ) -> None:
        if status != procrastinate_jobs.Status.FAILED:
            error_history.take(job)  # e.g. an abort at shutdown: nothing to record
            await super().finish_job(job=job, status=status, delete_job=delete_job)
            return
        await self._fail_attempt(
            job, self._failure(job), retry_at=None, delete_job=delete_job
        )
