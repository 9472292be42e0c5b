"""A worker's outcome writes (River's ``jobcompleter``).

- **Group write** (``submit``): successes and aborts not retried are
  written together: the first outcome starts a write, the ones that come
  meanwhile go in the next one (``pgjobs.finish_jobs``).
- **Prefetched starts** (``start``): a prefetched job given a slot starts
  once its ``started`` event is stored, in the next group write.
- **Failures** (``record_failure``): one job at a time (error row, retry
  decision, dead letter in one statement).
- **Hand-backs** (``record_interruption``): a job interrupted by the end of
  the shutdown grace goes back to the queue (pgjobs.worker.interruptions).

Every write retries a lost connection (and a database error that is not a
misconfiguration) with backoff until it works, or until the worker is
stopping and the outage outlasted its grace (``give_up``): the job then
stays ``doing`` and is rescued as stalled, like a killed worker's.

The completer is given what it needs (the job manager, the worker's logger,
outage trackers and reconciler, the grace) and calls back the worker for the
rest; see ``Completer.__init__``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from procrastinate import jobs

from pgjobs.failures import error_history
from pgjobs.worker import outages, query_errors, reconcile

_W = TypeVar("_W")

#: Most outcomes written by one statement.
MAX_FINISH = 500
#: Failed outcome writes in a row after which outcomes go one per write.
_ONE_BY_ONE_AFTER = 3


async def until_written(write: asyncio.Future[_W]) -> _W:
    """Await ``write`` to its end even if the caller is cancelled meanwhile
    (the cancellation is raised once it is written): a job whose task is
    cancelled while its outcome is written ends once it is stored."""
    try:
        return await asyncio.shield(write)
    except asyncio.CancelledError:
        await write
        raise


class Completer:
    """The outcome writes of one worker (see the module docstring)."""

    def __init__(
        self,
        job_manager: Any,
        *,
        logger: logging.Logger,
        reconciler: reconcile.Reconciler,
        outage: outages.Outage,
        trouble: query_errors.Streaks,
        connection_lost: Callable[[str, BaseException, float], Awaitable[None]],
        grace: float,
        worker_id: Callable[[], int | None],
        stopping: Callable[[], bool],
        on_started: Callable[[jobs.Job], None],
        on_not_started: Callable[[list[jobs.Job]], None],
        on_skipped: Callable[[], None],
        on_stored: Callable[[], None],
        on_written: Callable[[], None],
    ) -> None:
        """
        - ``job_manager``: pgjobs' JobManager (``finish_jobs``, ``retry_job``,
          ``finish_job``);
        - ``logger``: the worker's;
        - ``reconciler``: told of every outcome stored;
        - ``outage``, ``trouble``: told of every failed and working write;
        - ``connection_lost(where, exc, delay)``: a write lost its connection
          (logs the outage, drops the pool's dead connections);
        - ``grace``: seconds a stopping worker keeps retrying in an outage;
        - ``worker_id()``: the worker's id now (a heartbeat may change it);
        - ``stopping()``: the worker was asked to stop;
        - ``on_started(job)``: a prefetched job's ``started`` event is
          stored: run it;
        - ``on_not_started(jobs)``: the write of these prefetched jobs'
          ``started`` events was given up: back to the front of the
          prefetched line, their slots free;
        - ``on_skipped()``: a prefetched job given a slot is not started
          (stopping, or no longer this worker's): its slot goes on;
        - ``on_stored()``: an outcome was stored, a lock may be free: claim;
        - ``on_written()``: a group write ended (stored or given up).
        """
        self.job_manager = job_manager
        self.logger = logger
        self.reconciler = reconciler
        self.outage = outage
        self.trouble = trouble
        self._connection_lost = connection_lost
        self.grace = grace
        self._worker_id = worker_id
        self._stopping = stopping
        self._on_started = on_started
        self._on_not_started = on_not_started
        self._on_skipped = on_skipped
        self._on_stored = on_stored
        self._on_written = on_written
        self.pending: list[tuple[int, jobs.Status, bool, asyncio.Future[None]]] = []
        # Prefetched jobs given a slot: they start once the write that stores
        # their 'started' event commits (queued, then in the current write).
        self.to_start: list[jobs.Job] = []
        self.starting_now: list[jobs.Job] = []
        self.flushing: asyncio.Task[None] | None = None

    # -- group writes --------------------------------------------------------

    def submit(
        self, job_id: int, status: jobs.Status, delete: bool
    ) -> asyncio.Future[None]:
        """Queue an outcome for the next write; the future is done once it
        is stored (or given up on)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append((job_id, status, delete, done))
        self._schedule()
        return done

    def start(self, job: jobs.Job) -> None:
        """Start a prefetched job once its 'started' event is stored; it goes
        with the next write (the outcome of the job whose slot it took, as a
        rule), so a worker killed before that never ran it as far as the
        database knows, and one killed after has an attempt to account for."""
        self.to_start.append(job)
        self._schedule()

    def starting(self) -> list[jobs.Job]:
        """Prefetched jobs holding a slot, waiting for their 'started' event."""
        return [*self.starting_now, *self.to_start]

    def _schedule(self) -> None:
        if self.flushing is None or self.flushing.done():
            self.flushing = asyncio.create_task(self._flush(), name="finish_jobs")

    async def _flush(self) -> None:
        attempt = 0
        while self.pending or self.to_start:
            # Refused again and again by the database (not a lost
            # connection): one outcome per write, a refused one to the back
            # of the line, so one that cannot be written holds up no other.
            size = MAX_FINISH if attempt < _ONE_BY_ONE_AFTER else 1
            batch = self.pending[:size]
            del self.pending[:size]
            self.starting_now, self.to_start = self.to_start, []
            released: set[int] = set()
            try:
                finished, started = await self.job_manager.finish_jobs(
                    [(job_id, status, delete) for job_id, status, delete, _ in batch],
                    [job.id for job in self.starting_now],
                    worker_id=self._worker_id(),
                    released=released,
                )
            except Exception as exc:
                starting, self.starting_now = self.starting_now, []
                database_error = query_errors.is_database_error(exc)
                retry = database_error or outages.is_connection_error(exc)
                if retry and not self.give_up():
                    if database_error and size == 1:
                        self.pending.extend(batch)
                    else:
                        self.pending[:0] = batch  # keep them first in line
                    self.to_start[:0] = starting
                    delay = outages.backoff(attempt)
                    attempt += 1
                    if database_error:
                        self.trouble.failed("recording job outcomes", exc, delay)
                    else:
                        await self._connection_lost(
                            "recording job outcomes", exc, delay
                        )
                    await asyncio.sleep(delay)
                    continue
                # Not started: back to the front of the line, their slots
                # free (a stopping worker puts them back in the queue).
                self._on_not_started(starting)
                for job_id, status, _, done in batch:
                    if retry:
                        self._log_outcome_lost(job_id, status, exc)
                        if not done.done():
                            done.set_result(None)
                    elif not done.done():
                        done.set_exception(exc)
                self._on_written()
                continue
            starting, self.starting_now = self.starting_now, []
            self._start_recorded(starting, started, released)
            attempt = 0
            self.outage.recovered()
            self.trouble.recovered("recording job outcomes")
            # A finished job may unblock a job waiting for its lock: look again.
            self._on_stored()
            for job_id, status, delete, done in batch:
                if job_id not in finished:
                    self._log_not_running(job_id, status)
                else:
                    self.reconciler.written(job_id, status, delete)
                if not done.done():
                    done.set_result(None)
            self._on_written()

    def _start_recorded(
        self, starting: list[jobs.Job], started: set[int], released: set[int]
    ) -> None:
        stopping = self._stopping()
        for job in starting:
            if job.id in started and not stopping:
                self._on_started(job)
                continue
            if job.id in released:
                # Flow control: its queue was paused (or its deadline passed)
                # while it waited in memory; back in the queue, unstarted.
                self.logger.info(
                    "prefetched job %s not started: its queue is paused or its "
                    "start-by deadline passed; put back in the queue",
                    job.id,
                    extra={"action": "prefetched_job_released", "job_id": job.id},
                )
            elif not stopping:
                # Rescued or released meanwhile: no longer this worker's.
                self.logger.warning(
                    "prefetched job %s was no longer this worker's when its "
                    "turn came: not started",
                    job.id,
                    extra={"action": "prefetched_job_skipped", "job_id": job.id},
                )
            # Stopping: its slot is not used; the stop puts the job back.
            self._on_skipped()

    # -- one job at a time ---------------------------------------------------

    async def record_failure(
        self,
        job: jobs.Job,
        status: jobs.Status,
        retry_decision: Any,
        failure: error_history.Failure | None,
        delete_job: bool,
    ) -> bool:
        """Write a failed attempt (a retry or a final failure, or an abort
        retried); True once stored, False if given up on or the job was no
        longer this worker's."""
        assert job.id is not None
        job_id = job.id
        write = functools.partial(
            self._write_failure, job, status, retry_decision, failure, delete_job
        )

        async def once() -> bool:
            await write()
            self.reconciler.written_failure(job_id, status, write)
            return True

        async def failed(exc: BaseException, delay: float) -> bool:
            if outages.is_not_running_error(exc):
                self._log_not_running(job_id, status)
                return False
            database_error = query_errors.is_database_error(exc)
            if not database_error and not outages.is_connection_error(exc):
                raise exc
            if self.give_up():
                self._log_outcome_lost(job_id, status, exc)
                return False
            if database_error:
                self.trouble.failed("recording a job outcome", exc, delay)
            else:
                await self._connection_lost("recording a job outcome", exc, delay)
            return True

        if not await outages.retrying(once, failed):
            return False
        self.outage.recovered()
        self.trouble.recovered("recording a job outcome")
        self._on_stored()  # a retried or failed job frees its lock
        return True

    async def _write_failure(
        self,
        job: jobs.Job,
        status: jobs.Status,
        retry_decision: Any,
        failure: error_history.Failure | None,
        delete_job: bool,
    ) -> None:
        # procrastinate's Worker._persist_job_status, with the failure.
        if retry_decision:
            await self.job_manager.retry_job(
                job=job,
                retry_at=retry_decision.retry_at,
                lock=retry_decision.lock,
                priority=retry_decision.priority,
                queue=retry_decision.queue,
                failure=failure,
            )
        else:
            await self.job_manager.finish_job(
                job=job, status=status, delete_job=delete_job, failure=failure
            )

    async def record_interruption(
        self, job_id: int, write: Callable[[], Awaitable[object]]
    ) -> None:
        """Hand an interrupted job back with ``write``; a failure other than
        a lost connection leaves it running (rescued as stalled)."""

        async def once() -> None:
            await write()
            self.outage.recovered()

        async def failed(exc: BaseException, delay: float) -> bool:
            if not outages.is_connection_error(exc):
                self.logger.exception(
                    "job %s not handed back: it stays running and will be "
                    "rescued as stalled",
                    job_id,
                    extra={"action": "job_interrupt_failed", "job_id": job_id},
                )
                return False
            if self.give_up():
                self._log_outcome_lost(job_id, jobs.Status.TODO, exc)
                return False
            await self._connection_lost("handing back a job", exc, delay)
            return True

        await outages.retrying(once, failed)

    # -- giving up -----------------------------------------------------------

    def give_up(self) -> bool:
        """Stop retrying outcomes: stopping, and the outage outlasted the grace.

        The jobs stay ``doing`` and are rescued by the other workers as
        stalled (pgjobs.failures.stalled), like the jobs of a killed worker.
        """
        since = self.outage.since or self.trouble.active()
        if not self._stopping() or since is None:
            return False
        return time.monotonic() - since > self.grace

    def _log_not_running(self, job_id: int, status: jobs.Status) -> None:
        self.logger.warning(
            "job %s was no longer running when its outcome (%s) was recorded: "
            "another worker rescued it meanwhile",
            job_id,
            status.value,
            extra={"action": "finish_job_skipped", "job_id": job_id},
        )

    def _log_outcome_lost(
        self, job_id: int, status: jobs.Status, exc: BaseException
    ) -> None:
        self.logger.warning(
            "outcome (%s) of job %s not recorded, the database is unavailable: "
            "the job stays running and will be rescued as stalled (%s)",
            status.value,
            job_id,
            outages.describe(exc),
            extra={"action": "finish_job_abandoned", "job_id": job_id},
        )
