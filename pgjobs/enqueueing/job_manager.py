"""procrastinate's JobManager, with pgjobs' enqueue path and the worker's hot path.

Every procrastinate-style defer (``task.defer()``, ``configure().defer()``,
``batch_defer``, with or without ``connection=``) goes through here, so it
gets the same payload validation and duplicate handling as ``App.enqueue``.

The worker (``pgjobs.worker.worker``) claims and finishes jobs in batches here
(``fetch_jobs``, ``finish_jobs``); failures keep the per-job path below,
which writes the error row, the retry or final failure, and the dead letter
in one statement.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from procrastinate import connector as procrastinate_connector
from procrastinate import exceptions as procrastinate_exceptions
from procrastinate import jobs as procrastinate_jobs
from procrastinate import manager, types
from psycopg.types.json import Jsonb

from pgjobs.db import connector_info, queries
from pgjobs.enqueueing import deadlines
from pgjobs.enqueueing.enqueue import (
    as_is,
    check_duplicates,
    check_placement,
    psycopg_connection,
)
from pgjobs.errors import AlreadyEnqueued
from pgjobs.failures import dead_letters, error_history
from pgjobs.monitoring import tracing
from pgjobs.tasks import Task
from pgjobs.worker import outages

if TYPE_CHECKING:
    from procrastinate import app as procrastinate_app

logger = logging.getLogger("pgjobs.worker")


@contextlib.contextmanager
def _already_enqueued() -> Iterator[None]:
    """procrastinate's duplicate error as pgjobs' (which subclasses it)."""
    try:
        yield
    except procrastinate_exceptions.AlreadyEnqueued as exc:
        cause = exc.__cause__
        if isinstance(exc, AlreadyEnqueued) or not isinstance(
            cause, procrastinate_exceptions.UniqueViolation
        ):
            raise
        raise AlreadyEnqueued(cause.queueing_lock or "") from cause


class JobManager(manager.JobManager):
    def __init__(self, app: procrastinate_app.App) -> None:
        super().__init__(connector=app.connector)
        self._app = app
        #: Claims run as server-side prepared statements: set by a worker
        #: once it found that its pool's database gives sessions of their own
        #: (pgjobs.worker.listening: LISTEN works there), never behind a
        #: transaction pooler. The statement is then parsed once per
        #: connection, not on every claim.
        self.prepared_claims = False

    def _encode(
        self,
        job: procrastinate_jobs.Job,
        connector: procrastinate_connector.BaseConnector,
    ) -> tuple[dict[str, Any], Any]:
        """Check one job to defer: its arguments as JSON-ready values, and as
        the ``args`` value ``connector`` sends (see pgjobs.db.connector_info)."""
        check_placement(
            job.queue, job.task_name, job.priority, job.lock, job.queueing_lock
        )
        task = self._app.tasks.get(job.task_name)
        if not isinstance(task, Task):  # procrastinate's builtins, unknown names
            return job.task_kwargs, job.task_kwargs
        values, data = task.payload.encode(
            job.task_kwargs, connector_info.json_dumps(connector)
        )
        if connector_info.takes_jsonb(connector):
            return values, Jsonb(data, dumps=as_is)
        # The psycopg2 family wraps a dict with its own json_dumps.
        return values, values

    def _rows(
        self,
        jobs: list[procrastinate_jobs.Job],
        connector: procrastinate_connector.BaseConnector,
    ) -> list[types.JobToDefer]:
        rows = []
        for job in jobs:
            _, args = self._encode(job, connector)
            rows.append(
                types.JobToDefer(
                    queue_name=job.queue,
                    task_name=job.task_name,
                    priority=job.priority,
                    lock=job.lock,
                    queueing_lock=job.queueing_lock,
                    args=args,
                    scheduled_at=job.scheduled_at,
                )
            )
        return rows

    def _checked(
        self,
        jobs: list[procrastinate_jobs.Job],
        connector: procrastinate_connector.BaseConnector,
    ) -> list[procrastinate_jobs.Job]:
        """For procrastinate's own defer (in memory): validated arguments."""
        return [job.evolve(task_kwargs=self._encode(job, connector)[0]) for job in jobs]

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
        connector = self.connector.get_sync_connector()
        if connector_info.in_memory(connector):
            with _already_enqueued():
                return super().batch_defer_jobs(
                    self._checked(jobs, connector), connection
                )
        hook = getattr(self._app, "default_defer_connection", None)
        if connection is None and hook is not None:
            connection = hook()
        if connection is not None and connector_info.takes_jsonb(connector):
            # psycopg, SQLAlchemy or Django's: the psycopg connection under
            # it (the psycopg2 family takes its own connections as they are).
            connection = psycopg_connection(connection)
        rows = self._rows(jobs, connector)
        query = queries.query("enqueue_defer_jobs")
        with queries.translated_errors():
            if connection is not None:
                results = connector.execute_query_all_with_connection(
                    connection, query=query, jobs=rows
                )
            else:
                results = connector.execute_query_all(query=query, jobs=rows)
            deadlines.store_on(
                connector, connection, results[0]["ids"], deadlines.pending()
            )
            tracing.store_on(connector, connection, results[0]["ids"])
        return self._finish(jobs, rows, results)

    async def batch_defer_jobs_async(
        self, jobs: list[procrastinate_jobs.Job], connection: Any | None = None
    ) -> list[procrastinate_jobs.Job]:
        if connector_info.in_memory(self.connector):
            with _already_enqueued():
                return await super().batch_defer_jobs_async(
                    self._checked(jobs, self.connector), connection
                )
        rows = self._rows(jobs, self.connector)
        query = queries.query("enqueue_defer_jobs")
        with queries.translated_errors():
            if connection is not None:
                results = await self.connector.execute_query_all_async_with_connection(
                    connection, query=query, jobs=rows
                )
            else:
                results = await self.connector.execute_query_all_async(
                    query=query, jobs=rows
                )
            await deadlines.store_on_async(
                self.connector, connection, results[0]["ids"], deadlines.pending()
            )
            await tracing.store_on_async(self.connector, connection, results[0]["ids"])
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
        arguments = {
            "queues": queues,
            "worker_id": worker_id,
            "limit": limit,
            "start": start,
        }
        query = queries.query("worker_fetch_jobs")
        prepared = getattr(self.connector, "execute_prepared_all_async", None)
        if self.prepared_claims and prepared is not None:
            rows = await prepared(query, **arguments)
        else:
            rows = await self.connector.execute_query_all_async(
                query=query, **arguments
            )
        rows.sort(key=lambda row: (-row["priority"], row["id"]))
        return [procrastinate_jobs.Job.from_row(row) for row in rows]

    async def finish_jobs(
        self,
        finished: list[tuple[int, procrastinate_jobs.Status, bool]],
        started: list[int] | None = None,
        worker_id: int | None = None,
        released: set[int] | None = None,
    ) -> tuple[set[int], set[int]]:
        """Finish ``(job_id, status, delete_job)`` items in one statement,
        after writing the 'started' events of the prefetched jobs ``started``
        (those still 'doing').

        Returns (ids finished, ids whose 'started' event was written); a job
        no longer todo/doing is left alone, and so is, given ``worker_id``,
        one that is not 'doing' under that worker. Prefetched jobs whose
        queue was paused or whose start-by deadline passed meanwhile go back
        to the queue unstarted: added to ``released`` when given.
        """
        rows = await self.connector.execute_query_all_async(
            query=queries.query("worker_finish_jobs"),
            ids=[job_id for job_id, _, _ in finished],
            statuses=[status.value for _, status, _ in finished],
            deletes=[delete for _, _, delete in finished],
            started=started or [],
            worker_id=worker_id,
        )
        if released is not None:
            released.update(row["job"] for row in rows if row["started"] is None)
        return (
            {row["job"] for row in rows if row["started"] is False},
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

    async def heartbeat(
        self, worker_id: int, token: uuid.UUID, held: list[int]
    ) -> tuple[int, list[int], list[int]]:
        """Beat for ``worker_id`` (the process ``token``) holding ``held``:
        (its id, possibly new; its 'doing' jobs it does not hold; those it
        held at neither this beat nor the one before). See pgjobs.worker.reconcile."""
        row = await self.connector.execute_query_one_async(
            query=queries.query("worker_beat"),
            worker_id=worker_id,
            token=token,
            held=held,
        )
        return row["worker_id"], list(row["unheld"]), list(row["orphans"])

    async def release_jobs(self, worker_id: int, ids: list[int]) -> list[int]:
        """Put back the jobs ``ids`` still 'doing' under ``worker_id``."""
        rows = await self.connector.execute_query_all_async(
            query=queries.query("worker_release_jobs"), worker_id=worker_id, ids=ids
        )
        return [row["id"] for row in rows]

    async def unregister_worker(self, worker_id: int) -> None:
        # At shutdown during an outage: leave the row; the other workers
        # prune it (and rescue its jobs) once its heartbeat is old.
        try:
            await super().unregister_worker(worker_id)
        except Exception as exc:
            if not outages.is_connection_error(exc):
                raise
            logger.warning(
                "could not unregister worker %s: the database is unavailable",
                worker_id,
                extra={"action": "unregister_worker_failed", "worker_id": worker_id},
            )

    # -- failures: error row + retry/fail (+ dead letter) in one statement ----
    # Successes (and cancels/aborts) are batched by ``finish_jobs`` above;
    # ``finish_job`` below is procrastinate's API for a single outcome.

    def _failure(
        self, job: procrastinate_jobs.Job, failure: error_history.Failure | None
    ) -> error_history.Failure:
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
            query=queries.query("retries_fail_job_attempt"),
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
        *,
        failure: error_history.Failure | None = None,
    ) -> None:
        """procrastinate's, with the attempt's failure (the worker's, see
        pgjobs.failures.error_history) written in the same statement."""
        if connector_info.in_memory(self.connector):
            await super().retry_job(job, retry_at, priority, queue, lock)
            return
        failure = self._failure(job, failure)
        if failure.reschedule_at is not None:
            # Circuit breaker open: back to the queue, no attempt counted.
            await self.connector.execute_query_one_async(
                query=queries.query("breakers_reschedule_job"),
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
        *,
        failure: error_history.Failure | None = None,
    ) -> None:
        """procrastinate's; a failure is written with the attempt's error
        (``failure``, see ``retry_job``)."""
        if status != procrastinate_jobs.Status.FAILED or connector_info.in_memory(
            self.connector
        ):
            # e.g. an abort at shutdown: nothing to record
            await super().finish_job(job=job, status=status, delete_job=delete_job)
            return
        await self._fail_attempt(
            job, self._failure(job, failure), retry_at=None, delete_job=delete_job
        )
