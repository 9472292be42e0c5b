"""pgjobs' procrastinate ``Worker`` subclass: batched hot path, outage-proof loops.

procrastinate builds its worker in ``App._worker``; pgjobs' App returns this
class there, so ``procrastinate --app=... worker`` and ``pgjobs worker`` run
the same code. Features plug in through the App, not by editing this file:

- ``app.worker_side_tasks``: coroutine factories started with the worker's
  own side tasks (heartbeat, listener...) and cancelled at shutdown;
- ``app.task_middleware_defaults`` / ``app.worker_middleware_defaults``:
  middleware every worker of this app uses.

What this class changes in procrastinate's worker (``tests/test_hot_path.py``
pins the procrastinate code it replaces):

- **Batch claim**: when slots are free, one statement claims as many jobs as
  there are free slots (``pgjobs.fetch_jobs``: procrastinate's own priority,
  lock and schedule rules), and they all start at once. Only jobs that can
  start now are claimed, so nothing waits in memory behind a running job.
- **Group finish**: successful (and aborted) outcomes are written together:
  the first finished job starts a write, and the ones that finish meanwhile
  go in the next one (``pgjobs.finish_jobs``). A job's task ends only once
  its outcome is stored. Failures keep the per-job path (error history,
  retry decision, dead letter in one statement).
- **Slots free when the task returns**: ``concurrency`` bounds the jobs
  whose task code runs; a job whose code has returned gives its slot to the
  next claim while its outcome is being written (the claim and the write go
  in parallel on two pool connections). The job stays ``doing`` in the
  table until its outcome is stored, so its lock is held until then, and a
  worker that stops still waits for every outcome.
- **Prefetch** (opt-in, ``PGJOBS_PREFETCH`` / ``pgjobs worker --prefetch``):
  a claim also takes up to ``prefetch`` jobs beyond the free slots. They
  wait in memory (``doing``, without a ``started`` event yet) and each slot
  freed goes to the next of them, so the next claim overlaps the running
  jobs instead of following them. The price: a prefetched job is
  held while it waits (another worker cannot take it, a job of higher
  priority enqueued meanwhile starts after it, cancelling it needs
  ``--abort``). A prefetched job runs only once its ``started`` event is
  stored (in the outcome write of the job whose slot it takes), so a job
  without one since it was queued never ran: a stopping worker puts those
  back (``todo``, no attempt counted), and the stalled-job rescue does the
  same for a killed worker's. Off by default.
- **Less Python per job**: a task's kind and middleware chain are worked
  out once per task, log messages are built only when emitted, and a
  success's outcome is awaited without a task of its own (``_process_job``,
  ``_TaskPlan``).
- **Outages**: every loop that talks to the database (the start, claims,
  outcomes, heartbeat, listener, periodic deferrer, abort polling, pgjobs'
  side tasks) retries a lost connection with capped, jittered backoff
  instead of stopping the worker; ``pgjobs.resilience`` logs one line when
  the database goes away and one when it is back. A job that ended during
  an outage keeps its outcome in memory and is written when the database
  is back.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import gc
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from procrastinate import exceptions, job_context, jobs, utils
from procrastinate import middleware as procrastinate_middleware
from procrastinate import worker as procrastinate_worker

from pgjobs import error_history, middleware, resilience

SideTask = Callable[["Worker"], Awaitable[None]]
_T = TypeVar("_T")

#: procrastinate's per-queue NOTIFY channel prefix (names stop at 63 bytes).
_QUEUE_CHANNEL = "procrastinate_queue_v1#"
#: Most jobs claimed by one statement (also bounded by free slots).
MAX_CLAIM = 100
#: Most outcomes written by one statement.
MAX_FINISH = 500
#: procrastinate's per-job log actions and the level they are logged at:
#: their extras (the job serialised as a dict) are only built when a record
#: at that level would be emitted (two per job otherwise, for nothing).
_JOB_ACTION_LEVELS = {
    "loaded_job_info": logging.DEBUG,
    "finish_task": logging.DEBUG,
    "start_job": logging.INFO,
    "job_success": logging.INFO,
    "job_aborted": logging.INFO,
    "job_aborted_retry": logging.INFO,
    "job_error_retry": logging.INFO,
}


class Worker(procrastinate_worker.Worker):
    def __init__(
        self,
        *,
        side_tasks: list[SideTask] | None = None,
        prefetch: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.extra_side_tasks = list(side_tasks or [])
        self.prefetch = max(0, prefetch)
        # Claimed beyond the free slots, in start order (see the docstring).
        self._prefetched: collections.deque[jobs.Job] = collections.deque()
        self.outage = resilience.Outage()
        self._finisher = _Finisher(self)
        self._claim_unsure = False
        self._checking_pool = False
        # Jobs (by context) whose slot was freed when their task returned,
        # set when the last of them has its outcome written.
        self._slot_freed: set[int] = set()
        self._outcomes_written = asyncio.Event()
        self._outcomes_written_total = 0
        self._plans: dict[str, _TaskPlan] = {}

    async def run(self) -> None:
        """procrastinate's ``Worker.run``, with a start that outlives outages.

        Pruning stalled workers and registering this one retry a lost
        connection like every other loop (procrastinate's worker died there
        with a traceback when the database went away as it started).
        """
        # A stop requested from here on must stick (procrastinate clears a
        # stale one before its first await too).
        self._stop_event.clear()
        await self._warm_pool()
        # Everything loaded so far (modules, the app, its tasks) lives as long
        # as the worker: moved out of the collector's reach, a full collection
        # walks only what jobs allocate (30-60 ms pauses of the whole worker
        # under load before, every few tens of seconds).
        gc.freeze()
        manager = self.app.job_manager
        pruned = await self._starting(
            "pruning stalled workers",
            functools.partial(
                manager.prune_stalled_workers, self.stalled_worker_timeout
            ),
        )
        if pruned:
            self.logger.debug("Pruned stalled workers: %s", pruned)
        worker_id = await self._starting(
            "registering the worker", manager.register_worker
        )
        if worker_id is None:  # asked to stop while the database was away
            return
        self.worker_id = worker_id
        self.run_task = asyncio.current_task()
        self._loop = asyncio.get_running_loop()
        loop_task = asyncio.create_task(self._run_loop(), name="worker loop")  # type: ignore[no-untyped-call]
        try:
            # The loop is shielded: a cancellation asks for a graceful stop.
            await asyncio.shield(loop_task)
        except asyncio.CancelledError:
            self.stop()  # type: ignore[no-untyped-call]
            await loop_task
            raise
        finally:
            self._loop = None

    async def _starting(
        self, what: str, call: Callable[[], Awaitable[_T]]
    ) -> _T | None:
        """Run a start-up query, retrying a lost connection until it works;
        None if the worker is asked to stop meanwhile."""
        attempt = 0
        while True:
            try:
                result = await call()
            except Exception as exc:
                if not resilience.is_connection_error(exc):
                    raise
                delay = resilience.backoff(attempt)
                attempt += 1
                await self._connection_lost(what, exc, delay)
                if await resilience.sleep_or_stop(delay, self._stop_event):
                    return None
                continue
            self.outage.recovered()
            return result

    async def _warm_pool(self) -> None:
        """Open the connections the worker will need before the first job.

        Under load a worker uses a connection per claim, per outcome write
        and per running task that talks to the database; a pool that grows
        only when the load arrives adds a connection set-up (several ms, one
        at a time) to the first jobs' latency, and again after every idle
        period long enough for the pool to shrink.
        """
        pool = getattr(self.app.connector, "_async_pool", None)
        if pool is None:
            return
        target = min(pool.max_size, self.concurrency + 2)
        if pool.min_size >= target:
            return
        await pool.resize(min_size=target, max_size=pool.max_size)
        try:
            await pool.wait(timeout=10)
        except Exception as exc:  # the worker's own loops report outages
            self.logger.debug("connection pool not warmed up: %s", exc)

    # -- claiming ----------------------------------------------------------

    async def _fetch_and_process_jobs(self) -> None:
        """Claim jobs for every free slot until none is left or asked to stop."""
        try:
            await self._claim_while_slots_free()
        finally:
            if self._stop_event.is_set() and self.prefetch:
                await self._release_prefetched()

    async def _claim_while_slots_free(self) -> None:
        attempt = 0
        while not self._stop_event.is_set():
            if self._job_semaphore.locked():
                acquire = asyncio.create_task(self._job_semaphore.acquire())
                await utils.wait_any(acquire, self._stop_event.wait())
                if self._stop_event.is_set():
                    if acquire.done():
                        self._job_semaphore.release()
                    else:
                        acquire.cancel()
                    return
            else:  # a free slot: no task to wait for it
                await self._job_semaphore.acquire()
            slots = 1
            while slots < MAX_CLAIM and not self._job_semaphore.locked():
                await self._job_semaphore.acquire()  # free: returns at once
                slots += 1
            self._new_job_event.clear()
            assert self.worker_id is not None
            # Outcomes being written while the claim runs may put a job back
            # (a retry) after the claim's snapshot was taken.
            written_before = self._outcomes_written_total
            in_flight = bool(self._slot_freed)
            limit = slots + max(0, self.prefetch - len(self._prefetched))
            try:
                claimed = await self.app.job_manager.fetch_jobs(  # type: ignore[attr-defined]
                    queues=list(self.queues) if self.queues else None,
                    worker_id=self.worker_id,
                    limit=limit,
                    start=slots if limit > slots else None,
                )
            except Exception as exc:
                for _ in range(slots):
                    self._job_semaphore.release()
                if not resilience.is_connection_error(exc):
                    raise
                delay = resilience.backoff(attempt)
                attempt += 1
                await self._connection_lost("claiming jobs", exc, delay)
                # The claim may have committed before its reply was lost.
                self._claim_unsure = True
                if await resilience.sleep_or_stop(delay, self._stop_event):
                    return
                continue
            attempt = 0
            self.outage.recovered()
            if self._claim_unsure:
                await self._reclaim_unstarted(claimed)
            for _ in range(slots - len(claimed)):
                self._job_semaphore.release()
            for job in claimed[:slots]:
                self._start_job(job)
            self._prefetched.extend(claimed[slots:])
            if len(claimed) < limit:
                if not self.wait and (
                    self._prefetched
                    or self._finisher.starting()
                    or in_flight
                    or self._slot_freed
                    or self._outcomes_written_total != written_before
                ):
                    # Draining (wait=False): an outcome written during the
                    # claim may put a job back (a retry) or free a lock:
                    # look again once they are all written before calling
                    # the queue empty.
                    await self._wait_outcomes_written()
                    continue
                return  # the queue is empty for now: wait for a notification

    async def _release_prefetched(self) -> None:
        """Stopping: put the prefetched jobs not started back in the queue."""
        assert self.worker_id is not None
        # Starts already on their way to the database settle first (a
        # stopping worker starts none of them; see _Finisher._start_recorded).
        while self._finisher.starting():
            self._outcomes_written.clear()
            await self._outcomes_written.wait()
        self._prefetched.clear()
        running = [c.job.id for c in self._running_jobs.values() if c.job.id]
        try:
            released = await self.app.job_manager.release_unstarted_jobs(  # type: ignore[attr-defined]
                self.worker_id, running
            )
        except Exception as exc:
            if not resilience.is_connection_error(exc):
                raise
            self.logger.warning(
                "prefetched jobs not put back, the database is unavailable: "
                "they will be rescued as stalled (%s)",
                resilience.describe(exc),
                extra={"action": "prefetch_release_failed"},
            )
            return
        self._log_put_back(
            logging.INFO, "prefetched job(s) not started", "prefetch_released", released
        )

    async def _wait_outcomes_written(self) -> None:
        while (
            self._slot_freed or self._finisher.starting()
        ) and not self._stop_event.is_set():
            self._outcomes_written.clear()
            await utils.wait_any(self._outcomes_written.wait(), self._stop_event.wait())

    async def _reclaim_unstarted(self, claimed: list[jobs.Job]) -> None:
        """After a claim failed mid-way: put back the jobs claimed for this
        worker that it is not running (they would wait for its death)."""
        assert self.worker_id is not None
        running = [c.job.id for c in self._running_jobs.values() if c.job.id]
        ours = (*claimed, *self._prefetched, *self._finisher.starting())
        running += [job.id for job in ours if job.id]
        released = await self.app.job_manager.release_unstarted_jobs(  # type: ignore[attr-defined]
            self.worker_id, running
        )
        self._claim_unsure = False
        self._log_put_back(
            logging.WARNING,
            "job(s) whose claim reply was lost",
            "claim_released",
            released,
        )
        if released:
            self._new_job_event.set()

    def _log_put_back(
        self, level: int, what: str, action: str, released: list[int]
    ) -> None:
        if released:
            self.logger.log(
                level,
                "put back %d %s: %s",
                len(released),
                what,
                released,
                extra={"action": action, "job_ids": released},
            )

    async def _connection_lost(
        self, where: str, exc: BaseException, delay: float
    ) -> None:
        """Log the outage (once) and drop the pool's dead connections, so the
        retry gets a live one instead of the next dead one."""
        self.outage.failed(where, exc, delay)
        pool = getattr(self.app.connector, "_async_pool", None)
        if pool is None or self._checking_pool:
            return
        self._checking_pool = True
        try:
            await asyncio.wait_for(pool.check(), timeout=5)
        except Exception:  # best effort; the retry will tell
            pass
        finally:
            self._checking_pool = False

    def _start_job(self, job: jobs.Job) -> None:
        """procrastinate's job start (``Worker._fetch_and_process_jobs``)."""
        job_id = job.id
        context = job_context.JobContext(
            app=self.app,
            worker_name=self.worker_name,
            worker_queues=self.queues,
            additional_context=self.additional_context.copy()
            if self.additional_context
            else {},
            job=job,
            abort_reason=functools.partial(self._job_ids_to_abort.get, job_id),
            start_timestamp=time.time(),
        )
        job_task = asyncio.create_task(
            self._process_job(context),
            name=f"process job {job.task_name}[{job.id}]",
        )
        self._running_jobs[job_task] = context
        job_task.add_done_callback(self._on_job_complete)

    def _on_job_complete(self, task: asyncio.Task[Any]) -> None:
        context = self._running_jobs.pop(task)
        if id(context) in self._slot_freed:
            self._slot_freed.discard(id(context))
            self._outcomes_written_total += 1
            if not self._slot_freed:
                self._outcomes_written.set()
        else:
            self._release_slot()

    def _free_slot(self, context: job_context.JobContext) -> None:
        """The job's code has returned: its slot can take the next job."""
        if id(context) not in self._slot_freed:
            self._slot_freed.add(id(context))
            self._release_slot()

    def _release_slot(self) -> None:
        """A free slot goes to the next prefetched job, else to the claims.

        The prefetched job holds the slot from now on, and starts once its
        'started' event is stored (``_Finisher.start``).
        """
        if self._prefetched and not self._stop_event.is_set():
            self._finisher.start(self._prefetched.popleft())
        else:
            self._job_semaphore.release()

    # -- running -----------------------------------------------------------

    async def _process_job(self, context: job_context.JobContext) -> None:
        """procrastinate's ``Worker._process_job``: the same outcomes, retry
        decisions and log records, with less work per job.

        - a task's kind and middleware chain are worked out once per task,
          not per job (``_TaskPlan``);
        - log messages (the job's call string, three per job) are built only
          when a record at their level would be emitted;
        - a success's outcome is awaited on the group write directly, not
          through a task of its own; it is still shielded, so a job whose task
          is cancelled while its outcome is written ends once it is stored.
        """
        job = context.job
        task = self.app.tasks.get(job.task_name)
        logger = self.logger
        job_retry: exceptions.JobRetry | None = None
        exc_info: bool | BaseException = False
        retry_decision: Any = None
        job_result = job_context.JobResult(start_timestamp=context.start_timestamp)
        try:
            if not task:
                raise exceptions.TaskNotFound
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    f"Loaded job info, about to start job {job.call_string}",
                    extra=self._log_extra(
                        context=context, action="loaded_job_info", job_result=job_result
                    ),
                )
            if logger.isEnabledFor(logging.INFO):
                logger.info(
                    f"Starting job {job.call_string}",
                    extra=self._log_extra(
                        context=context, action="start_job", job_result=job_result
                    ),
                )
            job_result.result = await self._plan(task).run(context)
        except BaseException as e:
            exc_info = e
            # An aborted job can be retried if the abort is a shutdown's.
            if not isinstance(e, exceptions.JobAborted) or (
                context.abort_reason() == job_context.AbortReason.SHUTDOWN
            ):
                job_retry = (
                    task.get_retry_exception(exception=e, job=job) if task else None
                )
                retry_decision = job_retry.retry_decision if job_retry else None
                if isinstance(e, exceptions.TaskNotFound):
                    logger.exception(
                        "Task was not found",
                        extra=self._log_extra(
                            context=context,
                            action="task_not_found",
                            exception=str(e),
                            job_result=job_result,
                        ),
                    )
        finally:
            job_result.end_timestamp = time.time()
            if isinstance(exc_info, (exceptions.JobAborted, asyncio.CancelledError)):
                status = jobs.Status.ABORTED
            elif exc_info:
                status = jobs.Status.FAILED
            else:
                status = jobs.Status.SUCCEEDED
            failed = status == jobs.Status.FAILED and not job_retry
            # procrastinate logs outcomes on its module's logger.
            outcome_logger = procrastinate_worker.logger
            if outcome_logger.isEnabledFor(logging.ERROR if failed else logging.INFO):
                self._log_job_outcome(
                    status=status,
                    context=context,
                    job_result=job_result,
                    job_retry=job_retry,
                    exc_info=exc_info,
                )
            if retry_decision is None and status != jobs.Status.FAILED:
                await self._store_outcome(job, status, context)
            else:
                persist = asyncio.create_task(
                    self._persist_job_status(
                        job=job,
                        status=status,
                        retry_decision=retry_decision,
                        context=context,
                        job_result=job_result,
                    )
                )
                try:
                    await asyncio.shield(persist)
                except asyncio.CancelledError:
                    await persist
                    raise

    def _plan(self, task: Any) -> _TaskPlan:
        plan = self._plans.get(task.name)
        if plan is None or plan.task is not task:
            plan = self._plans[task.name] = _TaskPlan(self, task)
        return plan

    # -- finishing ---------------------------------------------------------

    async def _store_outcome(
        self, job: jobs.Job, status: jobs.Status, context: job_context.JobContext
    ) -> None:
        """A success (or an abort not retried): written with the next group
        write; returns once it is stored, even if cancelled meanwhile."""
        assert job.id is not None
        self._free_slot(context)
        error_history.take(job)  # e.g. an abort at shutdown: nothing to record
        delete_job = {
            jobs.DeleteJobCondition.ALWAYS: True,
            jobs.DeleteJobCondition.NEVER: False,
            jobs.DeleteJobCondition.SUCCESSFUL: status == jobs.Status.SUCCEEDED,
        }[self.delete_jobs]
        stored = self._finisher.submit(job.id, status, delete_job)
        try:
            await asyncio.shield(stored)
        except asyncio.CancelledError:
            await stored
            raise
        finally:
            self._job_ids_to_abort.pop(job.id, None)

    async def _persist_job_status(
        self,
        job: jobs.Job,
        status: jobs.Status,
        retry_decision: Any,
        context: job_context.JobContext,
        job_result: job_context.JobResult | None,
    ) -> None:
        assert job.id is not None
        if retry_decision is None and status != jobs.Status.FAILED:
            await self._store_outcome(job, status, context)
            return
        self._free_slot(context)
        # Failures and retries: one job at a time (error row, dead letter).
        failure = error_history.take(job)
        persist = super()._persist_job_status
        attempt = 0
        while True:
            if failure is not None:
                error_history.remember(job, failure)
            try:
                await persist(job, status, retry_decision, context, job_result)
            except Exception as exc:
                if resilience.is_not_running_error(exc):
                    self._log_not_running(job.id, status)
                    return
                if not resilience.is_connection_error(exc):
                    raise
                if self._give_up():
                    self._log_outcome_lost(job.id, status, exc)
                    return
                delay = resilience.backoff(attempt)
                attempt += 1
                await self._connection_lost("recording a job outcome", exc, delay)
                await asyncio.sleep(delay)
                continue
            self.outage.recovered()
            self._new_job_event.set()  # a retried or failed job frees its lock
            return

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
            resilience.describe(exc),
            extra={"action": "finish_job_abandoned", "job_id": job_id},
        )

    def _give_up(self) -> bool:
        """Stop retrying outcomes: stopping, and the outage outlasted the grace.

        The jobs stay ``doing`` and are rescued by the other workers as
        stalled (pgjobs.stalled), like the jobs of a killed worker.
        """
        if not self._stop_event.is_set() or self.outage.since is None:
            return False
        grace = self.shutdown_graceful_timeout or 30.0
        return time.monotonic() - self.outage.since > grace

    # -- side tasks --------------------------------------------------------

    def _start_side_tasks(self) -> list[asyncio.Task[Any]]:
        factories: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("update_heartbeats", self._update_heartbeat),
            ("deferrer", self._periodic_deferrer),
            ("poll_jobs_to_abort", self._poll_jobs_to_abort),
        ]
        if self.listen_notify:
            factories.append(("listener", self._listen))
        for factory in self.extra_side_tasks:
            name = getattr(factory, "__name__", "pgjobs_side_task")
            factories.append((name, functools.partial(factory, self)))
        return [
            asyncio.create_task(self._resilient(name, factory), name=name)
            for name, factory in factories
        ]

    async def _resilient(
        self, name: str, factory: Callable[[], Awaitable[Any]]
    ) -> None:
        """Run a side task; restart it after a lost connection, with backoff."""
        attempt = 0
        while True:
            started = time.monotonic()
            try:
                await factory()
                return
            except Exception as exc:
                if not resilience.is_connection_error(exc):
                    raise
                if time.monotonic() - started > 1.0:
                    attempt = 0  # it got going again before failing: start low
                delay = resilience.backoff(attempt)
                attempt += 1
                await self._connection_lost(name, exc, delay)
                await asyncio.sleep(delay)

    async def _listen(self) -> None:
        # (Re)connected: jobs may have arrived while nobody listened.
        self._new_job_event.set()
        queues = self.queues
        if queues and any(len(f"{_QUEUE_CHANNEL}{q}".encode()) > 63 for q in queues):
            queues = None  # no channel of its own: listen to every queue
        await self.app.job_manager.listen_for_jobs(
            on_notification=self._handle_notification, queues=queues
        )

    async def _update_heartbeat(self) -> None:
        # A missed heartbeat makes the other workers rescue this one's jobs:
        # after a lost connection, beat again at once (on a live connection),
        # not one interval later.
        while True:
            await asyncio.sleep(self.update_heartbeat_interval)
            assert self.worker_id is not None
            attempt = 0
            while True:
                try:
                    await self.app.job_manager.update_heartbeat(self.worker_id)
                    break
                except Exception as exc:
                    if not resilience.is_connection_error(exc):
                        raise
                    delay = min(
                        resilience.backoff(attempt), self.update_heartbeat_interval
                    )
                    attempt += 1
                    await self._connection_lost("heartbeat", exc, delay)
                    await asyncio.sleep(delay)
            self.outage.recovered()

    async def _poll_jobs_to_abort(self) -> None:
        # procrastinate's logs every failed poll with a traceback; a lost
        # connection here goes to _resilient (one line per outage) instead.
        while True:
            await asyncio.sleep(self.abort_job_polling_interval)
            if not self._running_jobs:
                continue
            job_ids = await self.app.job_manager.list_jobs_to_abort_async()
            self._handle_abort_jobs_requested(job_ids)

    # -- logging -----------------------------------------------------------

    def _log_extra(
        self,
        action: str,
        context: job_context.JobContext | None,
        job_result: job_context.JobResult | None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        level = _JOB_ACTION_LEVELS.get(action)
        if level is not None and not self.logger.isEnabledFor(level):
            return {"action": action}
        extra: dict[str, Any] = super()._log_extra(
            action, context, job_result, **kwargs
        )
        return extra


class _Finisher:
    """Group commit of job outcomes for one worker (see the module docstring)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.pending: list[tuple[int, jobs.Status, bool, asyncio.Future[None]]] = []
        # Prefetched jobs given a slot: they start once the write that stores
        # their 'started' event commits (queued, then in the current write).
        self.to_start: list[jobs.Job] = []
        self.starting_now: list[jobs.Job] = []
        self.flushing: asyncio.Task[None] | None = None

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
        worker = self.worker
        attempt = 0
        while self.pending or self.to_start:
            batch = self.pending[:MAX_FINISH]
            del self.pending[:MAX_FINISH]
            self.starting_now, self.to_start = self.to_start, []
            try:
                finished, started = await worker.app.job_manager.finish_jobs(  # type: ignore[attr-defined]
                    [(job_id, status, delete) for job_id, status, delete, _ in batch],
                    [job.id for job in self.starting_now],
                )
            except Exception as exc:
                starting, self.starting_now = self.starting_now, []
                if resilience.is_connection_error(exc) and not worker._give_up():
                    self.pending[:0] = batch  # keep them first in line
                    self.to_start[:0] = starting
                    delay = resilience.backoff(attempt)
                    attempt += 1
                    await worker._connection_lost("recording job outcomes", exc, delay)
                    await asyncio.sleep(delay)
                    continue
                # Not started: back to the front of the line, their slots
                # free (a stopping worker puts them back in the queue).
                worker._prefetched.extendleft(reversed(starting))
                for _ in starting:
                    worker._job_semaphore.release()
                for job_id, status, _, done in batch:
                    if resilience.is_connection_error(exc):
                        worker._log_outcome_lost(job_id, status, exc)
                        if not done.done():
                            done.set_result(None)
                    elif not done.done():
                        done.set_exception(exc)
                worker._outcomes_written.set()
                continue
            starting, self.starting_now = self.starting_now, []
            self._start_recorded(starting, started)
            attempt = 0
            worker.outage.recovered()
            # A finished job may unblock a job waiting for its lock: look again.
            worker._new_job_event.set()
            for job_id, status, _, done in batch:
                if job_id not in finished:
                    worker._log_not_running(job_id, status)
                if not done.done():
                    done.set_result(None)
            worker._outcomes_written.set()

    def _start_recorded(self, starting: list[jobs.Job], started: set[int]) -> None:
        worker = self.worker
        stopping = worker._stop_event.is_set()
        for job in starting:
            if job.id in started and not stopping:
                worker._start_job(job)
                continue
            if not stopping:
                # Rescued or released meanwhile: no longer this worker's.
                worker.logger.warning(
                    "prefetched job %s was no longer this worker's when its "
                    "turn came: not started",
                    job.id,
                    extra={"action": "prefetched_job_skipped", "job_id": job.id},
                )
            # Stopping: its slot is not used; the stop puts the job back.
            worker._release_slot()


class _TaskPlan:
    """How one task's jobs run on this worker, worked out once per task:
    procrastinate's ``_process_job`` resolved it for every job (the task's
    kind, its middleware chain). Worker middleware that declares the tasks
    it acts on (``pgjobs.middleware.for_tasks``) is left out of the chain of
    the other tasks."""

    def __init__(self, worker: Worker, task: Any) -> None:
        self.worker = worker
        self.task = task
        self.is_async = inspect.iscoroutinefunction(task.func)
        self.task_middleware = worker._resolve_task_middlewares(task, self.is_async)
        self.worker_middleware = [
            mw for mw in worker.worker_middleware if middleware.applies(mw, task)
        ]

    async def run(self, context: job_context.JobContext) -> Any:
        if self.worker_middleware:
            return await procrastinate_middleware.compose(
                self.worker_middleware,
                functools.partial(self._run_task, context),
                context,
                self.worker,
            )()
        return await self._run_task(context)

    async def _run_task(self, context: job_context.JobContext) -> Any:
        task = self.task
        job_args = [context] if task.pass_context else []
        kwargs = context.job.task_kwargs
        if self.is_async:

            async def run_async_task() -> Any:
                return await task(*job_args, **kwargs)

            call = run_async_task
            if self.task_middleware:
                call = procrastinate_middleware.compose(
                    self.task_middleware, run_async_task, context, self.worker
                )
            result = await call()
        else:

            def run_sync_task() -> Any:
                return task(*job_args, **kwargs)

            result = await utils.sync_to_async(
                procrastinate_middleware.compose(
                    self.task_middleware, run_sync_task, context, self.worker
                )
            )
        # A sync task function may return an awaitable (procrastinate awaits
        # it too; its middlewares only wrapped the awaitable's creation).
        if inspect.isawaitable(result):
            result = await result
        return result
