"""pgjobs' procrastinate ``Worker`` subclass: batched hot path, outage-proof loops.

procrastinate builds its worker in ``App._worker``; pgjobs' App returns this
class there, so ``procrastinate --app=... worker`` and ``pgjobs worker`` run
the same code. Features plug in through the App, not by editing this file:

- ``app.worker_side_tasks``: coroutine factories started with the worker's
  own side tasks (heartbeat, listener...) and cancelled at shutdown;
- ``app.task_middleware_defaults`` / ``app.worker_middleware_defaults``:
  middleware every worker of this app uses.

What this class changes in procrastinate's worker (``tests/worker/test_hot_path.py``
pins the procrastinate code it replaces):

- **Batch claim**: when slots are free, one statement claims as many jobs as
  there are free slots (``pgjobs.fetch_jobs``: procrastinate's own priority,
  lock and schedule rules), and they all start at once. Only jobs that can
  start now are claimed, so nothing waits in memory behind a running job.
- **Group finish**: successful (and aborted) outcomes are written together:
  the first finished job starts a write, and the ones that finish meanwhile
  go in the next one (``pgjobs.finish_jobs``). A job's task ends only once
  its outcome is stored. Failures keep the per-job path (error history,
  retry decision, dead letter in one statement). Both are
  ``pgjobs.worker.completer``'s.
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
  out once per task, log messages are built only when emitted
  (``pgjobs.worker.executor``), and a success's outcome is awaited without
  a task of its own (``_record``).
- **Outages**: every loop that talks to the database (the start, claims,
  outcomes, heartbeat, listener, periodic deferrer, abort polling, pgjobs'
  side tasks) retries a lost connection with capped, jittered backoff
  instead of stopping the worker; ``pgjobs.worker.outages`` logs one line when
  the database goes away and one when it is back. A job that ended during
  an outage keeps its outcome in memory and is written when the database
  is back.
- **Database errors that are not a lost connection** (a lock or statement
  timeout, a pooler's refusal, an error raised by a trigger) in a claim or
  an outcome write are retried the same way, logged once per streak; a
  claim refused by a misconfiguration (schema missing, privilege missing)
  stops the worker with one line saying what to change
  (``pgjobs.worker.query_errors``).
- **Wake-ups**: LISTEN/NOTIFY when it reaches the worker, polling at
  ``PGJOBS_POLL_INTERVAL`` behind a transaction pooler, one line at start
  either way (``pgjobs.worker.listening``).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from procrastinate import job_context, jobs, utils
from procrastinate import worker as procrastinate_worker

from pgjobs.db import connections
from pgjobs.failures import error_history
from pgjobs.worker import (
    completer,
    executor,
    interruptions,
    listening,
    outages,
    query_errors,
    reconcile,
)

SideTask = Callable[["Worker"], Awaitable[None]]
#: A start-up step: what it does (for the outage log) and the call.
StartStep = tuple[str, Callable[[], Awaitable[Any]]]
_T = TypeVar("_T")

#: procrastinate's per-queue NOTIFY channel prefix (names stop at 63 bytes).
_QUEUE_CHANNEL = "procrastinate_queue_v1#"
#: Most jobs claimed by one statement (also bounded by free slots).
MAX_CLAIM = 100
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


@dataclasses.dataclass(frozen=True)
class _Claim:
    """One claim: the slots it took, the most jobs it asked for, the jobs
    (those past ``slots`` prefetched), and what it saw of the outcomes
    being written when it started."""

    slots: int
    limit: int
    claimed: list[jobs.Job]
    written_before: int
    in_flight: bool


class Worker(procrastinate_worker.Worker):
    """procrastinate's worker with pgjobs' hot path (see the module docstring).

    procrastinate's private methods it overrides, together in the first
    section below (``tests/worker/test_hot_path.py`` pins procrastinate's code of
    each, and of ``_run_loop``, which runs them):

    - ``run``: a start that outlives outages, warms the pool, freezes gc;
    - ``_fetch_and_process_jobs``: batch claims and prefetch;
    - ``_process_job``: delegates to ``pgjobs.worker.executor``;
    - ``_persist_job_status``: a failure's write, through
      ``pgjobs.worker.completer``, with the attempt's failure;
    - ``_shutdown``: heartbeats through the grace, jobs handed back after it;
    - ``_start_side_tasks``: pgjobs' side tasks, each restarted after a lost
      connection;
    - ``_update_heartbeat``: the heartbeat that reconciles
      (``pgjobs.worker.reconcile``);
    - ``_poll_jobs_to_abort``: no traceback per failed poll;
    - ``_log_extra``: a job's extras built only when logged.

    It uses as they are procrastinate's ``_run_loop``,
    ``_resolve_task_middlewares``, ``_log_job_outcome``,
    ``_handle_notification`` and ``_handle_abort_jobs_requested``.
    """

    def __init__(
        self,
        *,
        side_tasks: list[SideTask] | None = None,
        start_steps: list[StartStep] | None = None,
        prefetch: int = 0,
        max_interruptions: int = 3,
        freeze_gc: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.freeze_gc = freeze_gc
        self.extra_side_tasks = list(side_tasks or [])
        #: Run once registered, before the first claim (retried like the
        #: registration): e.g. storing the declared limits.
        self.start_steps = list(start_steps or [])
        self.prefetch = max(0, prefetch)
        self.max_interruptions = max(1, max_interruptions)
        # Jobs still running when the shutdown grace ended, being handed back.
        self._interrupted: set[int] = set()
        # Claimed beyond the free slots, in start order (see the docstring).
        self._prefetched: collections.deque[jobs.Job] = collections.deque()
        self.outage = outages.Outage()
        self.trouble = query_errors.Streaks()
        self._wakeups = listening.Wakeups()
        #: Set when claims fail in a way retrying cannot cure: what to change.
        self.misconfigured: str | None = None
        self.reconciler = reconcile.Reconciler(self.app.job_manager, self._held_job_ids)
        self.outage.on_recovered.append(self.reconciler.reconnected)
        self._outcomes_written = asyncio.Event()
        self._completer = completer.Completer(
            self.app.job_manager,
            logger=self.logger,
            reconciler=self.reconciler,
            outage=self.outage,
            trouble=self.trouble,
            connection_lost=self._connection_lost,
            grace=self.shutdown_graceful_timeout or 30.0,
            worker_id=lambda: self.worker_id,
            stopping=self._stop_event.is_set,
            on_started=self._start_job,
            on_not_started=self._not_started,
            on_skipped=self._release_slot,
            on_stored=self._new_job_event.set,
            on_written=self._outcomes_written.set,
        )
        self._claim_unsure = False
        self._checking_pool = False
        #: Called when a claim finds nothing more to start (the queue is
        #: empty, or what waits is held back): see pgjobs.worker.limit_waits.
        self.on_idle: list[Callable[[], None]] = []
        # Jobs (by context) whose slot was freed when their task returned,
        # set when the last of them has its outcome written.
        self._slot_freed: set[int] = set()
        self._outcomes_written_total = 0
        self._executor = executor.Executor(
            find_task=lambda name: self.app.tasks.get(name),
            worker=self,
            task_middleware=self._resolve_task_middlewares,
            worker_middleware=self.worker_middleware,
            logger=self.logger,
            log_extra=self._log_extra,
            log_outcome=self._log_job_outcome,
            interrupted=self._interrupted.__contains__,
            record=self._record,
        )

    # -- procrastinate's methods, overridden (see the class docstring) ---------

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
        if self.freeze_gc:
            # Everything loaded so far (modules, the app, its tasks) lives as
            # long as the worker's process: out of the collector's reach, a
            # full collection walks only what jobs allocate (without it, 30-60
            # ms pauses of the whole worker under load every few tens of s).
            # Process-wide, so only when the worker owns the process.
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
        for what, step in self.start_steps:
            await self._starting(what, step)
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
        if self.misconfigured is not None:
            raise query_errors.WorkerMisconfigured(self.misconfigured)

    async def _fetch_and_process_jobs(self) -> None:
        """Claim jobs for every free slot until none is left or asked to stop."""
        try:
            await self._claim_while_slots_free()
        finally:
            if self._stop_event.is_set() and self.prefetch:
                await self._release_prefetched()

    async def _process_job(self, context: job_context.JobContext) -> None:
        """procrastinate's ``Worker._process_job``: the same outcomes, retry
        decisions and log records, with less work per job
        (pgjobs.worker.executor runs the job, ``_record`` writes its outcome)."""
        await self._executor.run(context)

    async def _persist_job_status(
        self,
        job: jobs.Job,
        status: jobs.Status,
        retry_decision: Any,
        context: job_context.JobContext,
        job_result: job_context.JobResult | None,
        failure: error_history.Failure | None = None,
    ) -> None:
        """procrastinate's, with the attempt's failure (the error row:
        pgjobs.failures.error_history) passed on to the JobManager."""
        assert job.id is not None
        if retry_decision is None and status != jobs.Status.FAILED:
            await self._store_outcome(job, status, context)
            return
        self._free_slot(context)
        # Failures and retries: one job at a time (error row, dead letter).
        stored = await self._completer.record_failure(
            job, status, retry_decision, failure, self._delete_job(status)
        )
        if not stored:
            return
        # The end of procrastinate's _persist_job_status.
        self._job_ids_to_abort.pop(job.id, None)
        self.logger.debug(
            f"Acknowledged job completion {job.call_string}",
            extra=self._log_extra(
                action="finish_task",
                context=context,
                status=status,
                job_result=job_result,
            ),
        )

    async def _shutdown(self, side_tasks: list[asyncio.Task[Any]]) -> None:
        """procrastinate's ``Worker._shutdown``, with pgjobs' deploy rules
        (``pgjobs.worker.interruptions``): heartbeats go on through the grace, so
        the other workers do not rescue jobs that are still finishing, and
        the jobs still running when it ends, sync ones too, are handed back
        to the queue instead of aborted (procrastinate's abort set them
        'aborted' for good and waited for sync jobs, whatever the grace)."""
        beating = [t for t in side_tasks if t.get_name() == "update_heartbeats"]
        await utils.cancel_and_capture_errors(
            [t for t in side_tasks if t not in beating]
        )
        now = time.time()
        for context in self._running_jobs.values():
            duration = now - context.start_timestamp
            self.logger.info(
                f"Waiting for job to finish: worker: {context.job.call_string} "
                f"(started {duration:.3f} s ago)",
                extra=self._log_extra(
                    context=None, action="ending_job", job_result=None
                ),
            )
        if self._running_jobs:
            await asyncio.wait(
                self._running_jobs, timeout=self.shutdown_graceful_timeout
            )
        if self._running_jobs:
            await self._interrupt_running_jobs()
        await utils.cancel_and_capture_errors(beating)
        assert self.worker_id is not None
        await self.app.job_manager.unregister_worker(self.worker_id)
        self.logger.debug(f"Unregistered finished worker {self.worker_id}")
        self.worker_id = None
        self.logger.info(
            f"Stopped worker on {utils.queues_display(self.queues)}",
            extra=self._log_extra(
                action="stop_worker", queues=self.queues, context=None, job_result=None
            ),
        )

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

    async def _update_heartbeat(self) -> None:
        # A missed heartbeat makes the other workers rescue this one's jobs:
        # after a lost connection, beat again at once (on a live connection),
        # not one interval later.
        # Each beat also reconciles the jobs marked running on this worker
        # with the ones it runs (pgjobs.worker.reconcile): at once after an outage.
        while True:
            await self.reconciler.wait(self.update_heartbeat_interval)
            await outages.retrying(
                self._beat,
                functools.partial(self._lost, "heartbeat"),
                max_delay=self.update_heartbeat_interval,
            )

    async def _poll_jobs_to_abort(self) -> None:
        # procrastinate's logs every failed poll with a traceback; a lost
        # connection here goes to _resilient (one line per outage) instead.
        while True:
            await asyncio.sleep(self.abort_job_polling_interval)
            if not self._running_jobs:
                continue
            job_ids = await self.app.job_manager.list_jobs_to_abort_async()
            self._handle_abort_jobs_requested(job_ids)

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

    # -- starting ----------------------------------------------------------

    async def _starting(
        self, what: str, call: Callable[[], Awaitable[_T]]
    ) -> _T | None:
        """Run a start-up query, retrying a lost connection until it works;
        None if the worker is asked to stop meanwhile."""

        async def once() -> _T:
            result = await call()
            self.outage.recovered()
            return result

        async def failed(exc: BaseException, delay: float) -> bool:
            if connections.is_read_only(exc):  # pointed at a hot standby
                raise connections.read_only(self.app.settings) from None  # type: ignore[attr-defined]
            return await self._lost(what, exc, delay)

        return await outages.retrying(
            once,
            failed,
            wait=functools.partial(outages.sleep_or_stop, stop=self._stop_event),
        )

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
        # Not pool.wait(): on a timeout (a server short of connection slots)
        # it closes the pool for good. The pool keeps filling meanwhile.
        deadline = time.monotonic() + 10
        while pool.get_stats().get("pool_size", target) < target:
            if time.monotonic() > deadline or self._stop_event.is_set():
                self.logger.warning(
                    "only %d of the %d connections this worker uses are open "
                    "after 10 s (the database short of connection slots?): "
                    "working with them, more open as slots free",
                    pool.get_stats().get("pool_size", 0),
                    target,
                    extra={"action": "pool_short"},
                )
                return
            await asyncio.sleep(0.05)

    async def _connection_lost(
        self, where: str, exc: BaseException, delay: float
    ) -> None:
        """Log the outage (once) and drop the pool's dead connections, so the
        retry gets a live one instead of the next dead one."""
        if where == "listener" and connections.no_free_slot(exc):
            # The pool works; only the LISTEN connection finds no slot.
            self.trouble.failed("opening the LISTEN connection", exc, delay)
            return
        self.outage.failed(where, exc, delay)
        reopen = getattr(self.app.connector, "reopen", None)
        if reopen is not None and not self._stop_event.is_set():
            await reopen()  # psycopg_pool closed it: it would refuse forever
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

    # -- claiming ----------------------------------------------------------

    async def _claim_while_slots_free(self) -> None:
        while not self._stop_event.is_set():
            claim = await outages.retrying(
                self._claim,
                self._claim_failed,
                wait=functools.partial(outages.sleep_or_stop, stop=self._stop_event),
            )
            if claim is None:  # stopping
                return
            self.outage.recovered()
            self.trouble.recovered("claiming jobs")
            slots, limit, claimed = claim.slots, claim.limit, claim.claimed
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
                    or self._completer.starting()
                    or claim.in_flight
                    or self._slot_freed
                    or self._outcomes_written_total != claim.written_before
                ):
                    # Draining (wait=False): an outcome written during the
                    # claim may put a job back (a retry) or free a lock:
                    # look again once they are all written before calling
                    # the queue empty.
                    await self._wait_outcomes_written()
                    continue
                for hook in self.on_idle:
                    hook()
                return  # the queue is empty for now: wait for a notification

    def wake(self) -> None:
        """Claim again now, as on an enqueue's notification."""
        self._new_job_event.set()

    async def _claim(self) -> _Claim | None:
        """Wait for a free slot, take every free one and claim jobs for them
        (None: asked to stop meanwhile); a failed claim frees its slots."""
        if self._job_semaphore.locked():
            acquire = asyncio.create_task(self._job_semaphore.acquire())
            await utils.wait_any(acquire, self._stop_event.wait())
            if self._stop_event.is_set():
                if acquire.done():
                    self._job_semaphore.release()
                else:
                    acquire.cancel()
                return None
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
        except Exception:
            for _ in range(slots):
                self._job_semaphore.release()
            raise
        return _Claim(slots, limit, claimed, written_before, in_flight)

    async def _claim_failed(self, exc: BaseException, delay: float) -> bool:
        """A claim failed: retry after ``delay`` (True), or stop the worker
        on a misconfiguration (False)."""
        if outages.is_connection_error(exc):
            await self._connection_lost("claiming jobs", exc, delay)
            # The claim may have committed before its reply was lost.
            self._claim_unsure = True
            return True
        if not query_errors.is_database_error(exc):
            raise exc
        hint = query_errors.misconfiguration(exc)
        if hint is not None:
            self.misconfigured = (
                f"cannot claim jobs ({query_errors.describe(exc)}): {hint}"
            )
            self.logger.error(
                "stopping: %s",
                self.misconfigured,
                extra={"action": "worker_misconfigured"},
            )
            self.stop()  # type: ignore[no-untyped-call]
            return False
        self.trouble.failed("claiming jobs", exc, delay)
        return True

    async def _release_prefetched(self) -> None:
        """Stopping: put the prefetched jobs not started back in the queue."""
        assert self.worker_id is not None
        # Starts already on their way to the database settle first (a
        # stopping worker starts none of them; see Completer._start_recorded).
        while self._completer.starting():
            self._outcomes_written.clear()
            await self._outcomes_written.wait()
        self._prefetched.clear()
        running = [c.job.id for c in self._running_jobs.values() if c.job.id]
        try:
            released = await self.app.job_manager.release_unstarted_jobs(  # type: ignore[attr-defined]
                self.worker_id, running
            )
        except Exception as exc:
            if not outages.is_connection_error(exc):
                raise
            self.logger.warning(
                "prefetched jobs not put back, the database is unavailable: "
                "they will be rescued as stalled (%s)",
                outages.describe(exc),
                extra={"action": "prefetch_release_failed"},
            )
            return
        self._log_put_back(
            logging.INFO, "prefetched job(s) not started", "prefetch_released", released
        )

    async def _wait_outcomes_written(self) -> None:
        while (
            self._slot_freed or self._completer.starting()
        ) and not self._stop_event.is_set():
            self._outcomes_written.clear()
            await utils.wait_any(self._outcomes_written.wait(), self._stop_event.wait())

    async def _reclaim_unstarted(self, claimed: list[jobs.Job]) -> None:
        """After a claim failed mid-way: put back the jobs claimed for this
        worker that it is not running (they would wait for its death)."""
        assert self.worker_id is not None
        running = [c.job.id for c in self._running_jobs.values() if c.job.id]
        ours = (*claimed, *self._prefetched, *self._completer.starting())
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

    def _held_job_ids(self) -> list[int]:
        """Jobs this worker holds: running or writing their outcome,
        prefetched, or about to start (what its heartbeat reports)."""
        ids = [c.job.id for c in self._running_jobs.values()]
        ids += [job.id for job in (*self._prefetched, *self._completer.starting())]
        return [job_id for job_id in ids if job_id is not None]

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

    # -- running -----------------------------------------------------------

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
        'started' event is stored (``Completer.start``).
        """
        if self._prefetched and not self._stop_event.is_set():
            self._completer.start(self._prefetched.popleft())
        else:
            self._job_semaphore.release()

    def _not_started(self, prefetched: list[jobs.Job]) -> None:
        """Their 'started' events were not stored: back to the front of the
        line, their slots free (a stopping worker puts them back)."""
        self._prefetched.extendleft(reversed(prefetched))
        for _ in prefetched:
            self._job_semaphore.release()

    async def _record(self, outcome: executor.Outcome) -> None:
        """Write an attempt's outcome. A success's is awaited on the group
        write directly, not through a task of its own; it is still
        shielded, so a job whose task is cancelled while its outcome is
        written ends once it is stored."""
        context = outcome.context
        job, status = context.job, outcome.status
        if outcome.interrupted:
            await self._hand_back(job, context)
        elif outcome.retry_decision is None and status != jobs.Status.FAILED:
            await self._store_outcome(job, status, context)
        else:
            persist = asyncio.create_task(
                self._persist_job_status(
                    job=job,
                    status=status,
                    retry_decision=outcome.retry_decision,
                    context=context,
                    job_result=outcome.job_result,
                    failure=outcome.failure,
                )
            )
            try:
                await asyncio.shield(persist)
            except asyncio.CancelledError:
                await persist
                raise

    # -- finishing ---------------------------------------------------------

    def _delete_job(self, status: jobs.Status) -> bool:
        return {
            jobs.DeleteJobCondition.ALWAYS: True,
            jobs.DeleteJobCondition.NEVER: False,
            jobs.DeleteJobCondition.SUCCESSFUL: status == jobs.Status.SUCCEEDED,
        }[self.delete_jobs]

    async def _store_outcome(
        self, job: jobs.Job, status: jobs.Status, context: job_context.JobContext
    ) -> None:
        """A success (or an abort not retried): written with the next group
        write; returns once it is stored, even if cancelled meanwhile."""
        assert job.id is not None
        self._free_slot(context)
        stored = self._completer.submit(job.id, status, self._delete_job(status))
        try:
            await asyncio.shield(stored)
        except asyncio.CancelledError:
            await stored
            raise
        finally:
            self._job_ids_to_abort.pop(job.id, None)

    # -- stopping ----------------------------------------------------------

    async def _interrupt_running_jobs(self) -> None:
        """The grace is over: stop every job whose code still runs (an async
        one is cancelled, a sync one's thread is abandoned) and hand it back;
        outcomes already on their way are written as usual."""
        running = [
            (task, context)
            for task, context in self._running_jobs.items()
            if id(context) not in self._slot_freed and context.job.id is not None
        ]
        if running:
            self.logger.warning(
                "%d job(s) still running after the %g s shutdown grace: handing "
                "them back to the queue (PGJOBS_SHUTDOWN_GRACE): %s",
                len(running),
                self.shutdown_graceful_timeout or 0,
                [context.job.id for _, context in running],
                extra={
                    "action": "jobs_interrupted",
                    "job_ids": [context.job.id for _, context in running],
                },
            )
        for task, context in running:
            assert context.job.id is not None
            self._job_ids_to_abort[context.job.id] = job_context.AbortReason.SHUTDOWN
            self._interrupted.add(context.job.id)
            task.cancel()
        await asyncio.gather(*self._running_jobs, return_exceptions=True)

    async def _hand_back(self, job: jobs.Job, context: job_context.JobContext) -> None:
        """Record an interrupted job's interruption (pgjobs.worker.interruptions);
        returns once it is stored, even if cancelled meanwhile."""
        assert job.id is not None and self.worker_id is not None
        self._free_slot(context)
        stored = asyncio.create_task(self._interrupt(job, self.worker_id))
        try:
            await asyncio.shield(stored)
        except asyncio.CancelledError:
            await stored
            raise
        finally:
            self._interrupted.discard(job.id)
            self._job_ids_to_abort.pop(job.id, None)

    async def _interrupt(self, job: jobs.Job, worker_id: int) -> None:
        assert job.id is not None
        await self._completer.record_interruption(
            job.id,
            functools.partial(
                interruptions.interrupt_job,
                self.app,
                job,
                worker_id=worker_id,
                grace=self.shutdown_graceful_timeout or 0,
                max_interruptions=self.max_interruptions,
                delete_job=self.delete_jobs == jobs.DeleteJobCondition.ALWAYS,
            ),
        )

    # -- side tasks --------------------------------------------------------

    async def _resilient(
        self, name: str, factory: Callable[[], Awaitable[Any]]
    ) -> None:
        """Run a side task; restart it after a lost connection, with backoff
        (starting low again when it got going before it failed)."""
        await outages.retrying(
            factory, functools.partial(self._lost, name), fresh_after=1.0
        )

    async def _lost(self, where: str, exc: BaseException, delay: float) -> bool:
        """A loop's failure: retry a lost connection (``_connection_lost``),
        raise anything else."""
        if not outages.is_connection_error(exc):
            raise exc
        await self._connection_lost(where, exc, delay)
        return True

    async def _listen(self) -> None:
        # (Re)connected: jobs may have arrived while nobody listened.
        self._new_job_event.set()
        connector = self.app.connector
        if hasattr(connector, "on_listen_connected"):
            connector.on_listen_connected = functools.partial(
                self.trouble.recovered, "opening the LISTEN connection"
            )
        if not await self._wakeups.ready(self):
            self._new_job_event.set()  # the poll interval just changed
            await asyncio.Event().wait()  # polling: nothing to listen to
        queues = self.queues
        if queues and any(len(f"{_QUEUE_CHANNEL}{q}".encode()) > 63 for q in queues):
            queues = None  # no channel of its own: listen to every queue
        await self.app.job_manager.listen_for_jobs(
            on_notification=self._handle_notification, queues=queues
        )

    async def _beat(self) -> None:
        assert self.worker_id is not None
        self.worker_id = await self.reconciler.beat(self.worker_id)
        self.outage.recovered()
