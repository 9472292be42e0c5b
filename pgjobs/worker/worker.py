"""pgjobs' procrastinate ``Worker`` subclass: batched hot path, outage-proof loops.

procrastinate builds its worker in ``App._worker``; pgjobs' App returns this
class there, so ``procrastinate --app=... worker`` and ``pgjobs worker`` run
the same code. Features plug in through the App, not by editing this file:

- ``app.worker_side_tasks``: coroutine factories started with the worker's
  own side tasks (heartbeat, listener...) and cancelled at shutdown;
- ``app.worker_start_steps``: (what, call) pairs run once the worker is
  registered, before its first claim, retried through outages like the
  registration (storing the declared limits: ``pgjobs.worker.limits``);
- ``worker.on_idle``: callbacks for when a claim leaves the worker with
  nothing more to start, and ``worker.wake()`` to claim again at once
  (``pgjobs.worker.limit_waits``);
- ``app.task_middleware_defaults`` / ``app.worker_middleware_defaults``:
  middleware every worker of this app uses.

What it changes in procrastinate's worker (``tests/worker/test_hot_path.py``
pins the procrastinate code it replaces), each in the part named:

- **Batch claims** for every free slot, a slot freed when the job's code
  returns, opt-in **prefetch** (``PGJOBS_PREFETCH``): ``claimer``;
- **running one job** with a task's plan worked out once, log records built
  only when emitted: ``executor``;
- **group finish** of successes, the per-job write of failures (error row,
  retry decision, dead letter in one statement), a job's task ending only
  once its outcome is stored: ``outcomes`` and ``completer``;
- **deploys**: jobs still running when the shutdown grace ends are handed
  back to the queue: ``interruptions``;
- **outages**: every loop that talks to the database (the start, claims,
  outcomes, heartbeat, listener, periodic deferrer, abort polling, pgjobs'
  side tasks) retries a lost connection with capped, jittered backoff, one
  log line when the database goes away and one when it is back; outcomes
  of jobs that ended meanwhile are written when it is back: ``outages``,
  ``starting``; database errors that are not a lost connection are retried
  the same way, a misconfiguration stops the worker with one line saying
  what to change: ``query_errors``;
- **failovers**: the heartbeat reconciles the jobs marked running on this
  worker with the ones it runs: ``reconcile``;
- **wake-ups**: LISTEN/NOTIFY when it reaches the worker, polling behind a
  transaction pooler, one line at start either way: ``listening``; enqueues
  notify only while a worker waits for work: ``wakeups``.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from procrastinate import job_context, jobs, utils
from procrastinate import worker as procrastinate_worker

from pgjobs.failures import error_history
from pgjobs.worker import (
    claimer,
    completer,
    executor,
    interruptions,
    listening,
    outages,
    outcomes,
    pushes,
    query_errors,
    reconcile,
    starting,
    wakeups,
)

SideTask = Callable[["Worker"], Awaitable[None]]
#: A start-up step: what it does (for the outage log) and the call.
StartStep = tuple[str, Callable[[], Awaitable[Any]]]

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
    """procrastinate's worker with pgjobs' hot path (see the module docstring).

    It wires the parts — ``claimer.Claimer``, ``executor.Executor``,
    ``outcomes.Outcomes`` and ``completer.Completer``,
    ``interruptions.Interrupter``, ``reconcile.Reconciler``,
    ``listening.Listener``, ``outages.PoolRecovery`` — each given what it
    needs and calling back through the functions it is given. The
    procrastinate methods it overrides come first below
    (``tests/worker/test_hot_path.py`` pins procrastinate's code of each and
    of ``_run_loop``, which runs them): ``run``, ``_fetch_and_process_jobs``,
    ``_process_job``, ``_persist_job_status``, ``_shutdown``,
    ``_start_side_tasks``, ``_update_heartbeat``, ``_poll_jobs_to_abort``,
    ``_log_extra``. It uses as they are ``_run_loop``,
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
        #: Called when a claim finds nothing more to start (the queue is
        #: empty, or what waits is held back): see pgjobs.worker.limit_waits.
        self.on_idle: list[Callable[[], None]] = []
        self.outage = outages.Outage()
        self.trouble = query_errors.Streaks()
        #: Set when claims fail in a way retrying cannot cure: what to change.
        self.misconfigured: str | None = None
        manager = self.app.job_manager
        self._connection_lost = outages.PoolRecovery(
            self.app.connector,
            outage=self.outage,
            trouble=self.trouble,
            stopping=self._stop_event.is_set,
        )
        self.claimer = claimer.Claimer(
            manager,
            logger=self.logger,
            semaphore=self._job_semaphore,
            stop_event=self._stop_event,
            new_job_event=self._new_job_event,
            queues=self.queues,
            prefetch=prefetch,
            drain=not self.wait,
            outage=self.outage,
            trouble=self.trouble,
            connection_lost=self._connection_lost,
            worker_id=lambda: self.worker_id,
            running_ids=self._running_ids,
            start_job=self._start_job,
            starting=lambda: self._completer.starting(),
            start_prefetched=lambda job: self._completer.start(job),
            misconfigured=self._misconfigured,
            idle=self._idle,
            claimed=lambda found, asked: self._wakeups.claimed(found, asked),
            written=lambda: self.reconciler.remembered(),
        )
        self.reconciler = reconcile.Reconciler(manager, self._held_job_ids)
        self.outage.on_recovered.append(self.reconciler.reconnected)
        self._completer = completer.Completer(
            manager,
            logger=self.logger,
            reconciler=self.reconciler,
            outage=self.outage,
            trouble=self.trouble,
            connection_lost=self._connection_lost,
            grace=self.shutdown_graceful_timeout or 30.0,
            worker_id=lambda: self.worker_id,
            stopping=self._stop_event.is_set,
            on_started=self._start_job,
            on_not_started=self.claimer.not_started,
            on_skipped=self.claimer.release_slot,
            on_stored=self._new_job_event.set,
            on_written=self.claimer.outcomes_written,
        )
        self._interrupter = interruptions.Interrupter(
            self.app,
            logger=self.logger,
            record=self._completer.record_interruption,
            free_slot=self.claimer.free_slot,
            slot_freed=self.claimer.slot_freed,
            job_ids_to_abort=self._job_ids_to_abort,
            worker_id=lambda: self.worker_id,
            grace=self.shutdown_graceful_timeout,
            max_interruptions=max_interruptions,
            delete_job=self.delete_jobs == jobs.DeleteJobCondition.ALWAYS,
        )
        self._executor = executor.Executor(
            find_task=lambda name: self.app.tasks.get(name),
            worker=self,
            task_middleware=self._resolve_task_middlewares,
            worker_middleware=self.worker_middleware,
            logger=self.logger,
            log_extra=self._log_extra,
            log_outcome=self._log_job_outcome,
            interrupted=self._interrupter.interrupted.__contains__,
            record=lambda outcome: self._outcomes.record(outcome),
        )
        settings = getattr(self.app, "settings", None)
        self.pushes = pushes.Pushes(
            manager,
            enabled=bool(getattr(settings, "push_jobs", False))
            and self.concurrency >= 2
            and self.wait,
            semaphore=self._job_semaphore,
            queues=list(self.queues) if self.queues else None,
            worker_id=lambda: self.worker_id,
            stopping=self._stop_event.is_set,
            changed=lambda: self._wakeups.poke(),
            logger=self.logger,
        )
        self._listener = listening.Listener(
            self.app.connector,
            manager,
            queues=self.queues,
            new_job_event=self._new_job_event,
            on_notification=self._notified,
            on_listening=self.pushes.on_listening,
            on_connected=functools.partial(
                self.trouble.recovered, "opening the LISTEN connection"
            ),
            set_poll_interval=self._set_poll_interval,
        )
        self._wakeups = wakeups.Wakeups(
            self.app.connector,
            listening=self._listener.ready,
            wake=self.wake,
            logger=self.logger,
            follow_pushes=self.pushes.follow,
        )
        self._outcomes = outcomes.Outcomes(
            completer=self._completer,
            free_slot=self.claimer.free_slot,
            hand_back=self._interrupter.hand_back,
            persist=self._persist_job_status,
            record_failure=self._completer.record_failure,
            delete_jobs=self.delete_jobs,
            job_ids_to_abort=self._job_ids_to_abort,
            logger=self.logger,
            log_extra=self._log_extra,
        )

    @property
    def prefetch(self) -> int:
        return self.claimer.prefetch

    # -- procrastinate's methods, overridden (see the class docstring) ---------

    async def run(self) -> None:
        """procrastinate's ``Worker.run``, with a start that outlives outages
        (``pgjobs.worker.starting``)."""
        # A stop requested from here on must stick (procrastinate clears a
        # stale one before its first await too).
        self._stop_event.clear()
        await starting.warm_pool(
            self.app.connector,
            concurrency=self.concurrency,
            stop_event=self._stop_event,
            logger=self.logger,
        )
        if self.freeze_gc:
            # Everything loaded so far (modules, the app, its tasks) lives as
            # long as the worker's process: out of the collector's reach, a
            # full collection walks only what jobs allocate (without it, 30-60
            # ms pauses of the whole worker under load every few tens of s).
            # Process-wide, so only when the worker owns the process.
            gc.freeze()
        worker_id = await starting.register(
            self.app.job_manager,
            stalled_worker_timeout=self.stalled_worker_timeout,
            settings=getattr(self.app, "settings", None),
            outage=self.outage,
            lost=self._lost,
            stop_event=self._stop_event,
            logger=self.logger,
            steps=self.start_steps,
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
        if self.misconfigured is not None:
            raise query_errors.WorkerMisconfigured(self.misconfigured)

    async def _fetch_and_process_jobs(self) -> None:
        """Claim jobs for every free slot until none is left or asked to stop."""
        try:
            await self.claimer.claim_while_slots_free()
        finally:
            if self._stop_event.is_set():
                await self.claimer.release_prefetched()

    async def _process_job(self, context: job_context.JobContext) -> None:
        """procrastinate's ``Worker._process_job``: the same outcomes, retry
        decisions and log records, with less work per job
        (pgjobs.worker.executor runs the job, pgjobs.worker.outcomes writes
        its outcome)."""
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
        pgjobs.failures.error_history): ``Outcomes.persist``."""
        await self._outcomes.persist(
            job, status, retry_decision, context, job_result, failure
        )

    async def _shutdown(self, side_tasks: list[asyncio.Task[Any]]) -> None:
        """procrastinate's ``Worker._shutdown``, with pgjobs' deploy rules
        (``pgjobs.worker.interruptions``): heartbeats go on through the grace, so
        the other workers do not rescue jobs that are still finishing, and
        the jobs still running when it ends, sync ones too, are handed back
        to the queue instead of aborted (procrastinate's abort set them
        'aborted' for good and waited for sync jobs, whatever the grace)."""
        # Before the LISTEN connection closes: no push left unread in it.
        await self.pushes.withdraw()
        beating = [t for t in side_tasks if t.get_name() == "update_heartbeats"]
        await utils.cancel_and_capture_errors(
            [t for t in side_tasks if t not in beating]
        )
        await self._interrupter.finish(self._running_jobs, self._log_extra)
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
            factories.append(("listener", self._listener.listen))
            if self.wait:
                factories.append(("wakeups", self._wakeups.run))
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

    # -- the parts' callbacks ------------------------------------------------

    async def _notified(self, *, channel: str, notification: Any) -> None:
        """A notification: a pushed job starts here and now, in the slot
        kept for it (pgjobs.worker.pushes); the others as procrastinate's."""
        if notification.get("type") == "job_pushed":
            job = self.pushes.received(channel, notification)
            if job is not None:
                self._start_job(job)
            return
        await self._handle_notification(channel=channel, notification=notification)

    def wake(self) -> None:
        """Claim again now, as on an enqueue's notification."""
        self._new_job_event.set()

    def _idle(self) -> None:
        for hook in self.on_idle:
            hook()

    def _misconfigured(self, what: str) -> None:
        """Claims fail in a way retrying cannot cure: stop, saying why."""
        self.misconfigured = what
        self.logger.error(
            "stopping: %s", what, extra={"action": "worker_misconfigured"}
        )
        self.stop()  # type: ignore[no-untyped-call]

    def _set_poll_interval(self, seconds: float) -> None:
        self.fetch_job_polling_interval = seconds

    def _running_ids(self) -> list[int]:
        return [c.job.id for c in self._running_jobs.values() if c.job.id]

    def _held_job_ids(self) -> list[int]:
        """Jobs this worker holds: running or writing their outcome,
        prefetched, or about to start (what its heartbeat reports)."""
        ids = self._running_ids()
        held = (*self.claimer.held(), *self._completer.starting())
        return ids + [job.id for job in held if job.id is not None]

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
        self.claimer.job_done(self._running_jobs.pop(task))

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
        """A loop's failure: retry a lost connection, raise anything else."""
        if not outages.is_connection_error(exc):
            raise exc
        await self._connection_lost(where, exc, delay)
        return True

    async def _beat(self) -> None:
        assert self.worker_id is not None
        self.worker_id = await self.reconciler.beat(self.worker_id)
        self.outage.recovered()
