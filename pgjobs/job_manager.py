"""procrastinate's JobManager, with pgjobs' enqueue path.

Every procrastinate-style defer (``task.defer()``, ``configure().defer()``,
``batch_defer``, with or without ``connection=``) goes through here, so it
gets the same payload validation and duplicate handling as ``App.enqueue``.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from procrastinate import jobs as procrastinate_jobs
from procrastinate import manager, types
from psycopg.types.json import Jsonb

from pgjobs import dead_letters, error_history, queries
from pgjobs.enqueue import check_duplicates
from pgjobs.tasks import Task

if TYPE_CHECKING:
    from procrastinate import app as procrastinate_app


class JobManager(manager.JobManager):
    def __init__(self, app: procrastinate_app.App) -> None:
        super().__init__(connector=app.connector)
        self._app = app

    def _rows(self, jobs: list[procrastinate_jobs.Job]) -> list[types.JobToDefer]:
        rows = []
        for job in jobs:
            task = self._app.tasks.get(job.task_name)
            args = (
                task.payload.dump(job.task_kwargs)
                if isinstance(task, Task)
                else job.task_kwargs
            )
            rows.append(
                types.JobToDefer(
                    queue_name=job.queue,
                    task_name=job.task_name,
                    priority=job.priority,
                    lock=job.lock,
                    queueing_lock=job.queueing_lock,
                    args=Jsonb(args),  # type: ignore[arg-type]
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
