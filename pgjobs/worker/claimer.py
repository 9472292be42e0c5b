"""A worker's claims: its slots, batch claims and prefetch (River's producer).

- **Slots**: procrastinate's job semaphore (``concurrency`` permits). A
  claim waits for one free slot, takes every free one, and asks
  ``pgjobs.fetch_jobs`` for that many jobs (at most ``MAX_CLAIM``); slots
  it found no job for are given back. A job's slot is freed when its code
  returns (``free_slot``), not when its outcome is stored, so the next claim
  and the outcome write go in parallel.
- **Prefetch** (``prefetch`` > 0): a claim also takes up to ``prefetch``
  jobs beyond the free slots. They wait here, in order; a freed slot goes
  to the next of them (``release_slot``), which starts once the completer
  has stored its ``started`` event. A stopping worker puts the ones not
  started back (``release_prefetched``).
- **An empty queue**: a claim that finds fewer jobs than it asked for ends
  the loop until a notification or the poll interval. A draining worker
  (``wait=False``) first waits for the outcomes being written: one of them
  may put a job back (a retry) or free a lock.
- **Failures**: a lost connection is retried with backoff; the claim may
  have committed before its reply was lost, so the next claim first puts
  back the jobs claimed for this worker that it does not run
  (``_reclaim_unstarted``). A database error that is a misconfiguration
  stops the worker with one line (``pgjobs.worker.query_errors``).

The claimer is given the worker's semaphore and events and calls it back
for the rest; see ``Claimer.__init__``.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from procrastinate import job_context, jobs, utils

from pgjobs.worker import outages, query_errors

#: Most jobs claimed by one statement (also bounded by free slots).
MAX_CLAIM = 100


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


class Claimer:
    """The claims of one worker (see the module docstring)."""

    def __init__(
        self,
        job_manager: Any,
        *,
        logger: logging.Logger,
        semaphore: asyncio.Semaphore,
        stop_event: asyncio.Event,
        new_job_event: asyncio.Event,
        queues: Iterable[str] | None,
        prefetch: int,
        drain: bool,
        outage: outages.Outage,
        trouble: query_errors.Streaks,
        connection_lost: Callable[[str, BaseException, float], Awaitable[None]],
        worker_id: Callable[[], int | None],
        running_ids: Callable[[], list[int]],
        start_job: Callable[[jobs.Job], None],
        starting: Callable[[], list[jobs.Job]],
        start_prefetched: Callable[[jobs.Job], None],
        misconfigured: Callable[[str], None],
        idle: Callable[[], None] = lambda: None,
        claimed: Callable[[int, int], None] = lambda found, asked: None,
        written: Callable[[], list[int]] = list,
    ) -> None:
        self._job_manager = job_manager
        self._logger = logger
        self._semaphore = semaphore
        self._stop_event = stop_event
        self._new_job_event = new_job_event
        self._queues = list(queues) if queues else None
        self.prefetch = max(0, prefetch)
        self._drain = drain
        self._outage = outage
        self._trouble = trouble
        self._connection_lost = connection_lost
        self._worker_id = worker_id
        self._running_ids = running_ids
        self._start_job = start_job
        #: The prefetched jobs given a slot whose start is being stored.
        self._starting = starting
        self._start_prefetched = start_prefetched
        self._misconfigured = misconfigured
        #: Told when a claim leaves the worker with nothing more to start.
        self._idle = idle
        #: Told after every claim: the jobs found, the most it asked for.
        self._claimed = claimed
        #: Jobs whose outcome it wrote and may write again (a failover's
        #: lost outcomes: pgjobs.worker.reconcile).
        self._written = written
        # Claimed beyond the free slots, in start order.
        self._prefetched: collections.deque[jobs.Job] = collections.deque()
        # Jobs (by context) whose slot was freed when their task returned;
        # the event is set when the last of them has its outcome written.
        self._slot_freed: set[int] = set()
        self._outcomes_written = asyncio.Event()
        self._outcomes_written_total = 0
        self._claim_unsure = False

    # -- the claim loop ----------------------------------------------------

    async def claim_while_slots_free(self) -> None:
        """Claim jobs for every free slot until none is left or asked to stop."""
        while not self._stop_event.is_set():
            claim = await outages.retrying(
                self._claim,
                self._claim_failed,
                wait=functools.partial(outages.sleep_or_stop, stop=self._stop_event),
            )
            if claim is None:  # stopping
                return
            self._outage.recovered()
            self._trouble.recovered("claiming jobs")
            slots, limit, claimed = claim.slots, claim.limit, claim.claimed
            if self._claim_unsure:
                await self._reclaim_unstarted(claimed)
            for _ in range(slots - len(claimed)):
                self._semaphore.release()
            for job in claimed[:slots]:
                self._start_job(job)
            self._prefetched.extend(claimed[slots:])
            self._claimed(len(claimed), limit)
            if len(claimed) < limit:
                if self._drain and (
                    self._prefetched
                    or self._starting()
                    or claim.in_flight
                    or self._slot_freed
                    or self._outcomes_written_total != claim.written_before
                ):
                    # An outcome written during the claim may put a job back
                    # (a retry) or free a lock: look again once they are all
                    # written before calling the queue empty.
                    await self._wait_outcomes_written()
                    continue
                self._idle()
                return  # the queue is empty for now: wait for a notification

    async def _claim(self) -> _Claim | None:
        """Wait for a free slot, take every free one and claim jobs for them
        (None: asked to stop meanwhile); a failed claim frees its slots."""
        if self._semaphore.locked():
            acquire = asyncio.create_task(self._semaphore.acquire())
            await utils.wait_any(acquire, self._stop_event.wait())
            if self._stop_event.is_set():
                if acquire.done():
                    self._semaphore.release()
                else:
                    acquire.cancel()
                return None
        else:  # a free slot: no task to wait for it
            await self._semaphore.acquire()
        slots = 1
        while slots < MAX_CLAIM and not self._semaphore.locked():
            await self._semaphore.acquire()  # free: returns at once
            slots += 1
        self._new_job_event.clear()
        worker_id = self._worker_id()
        assert worker_id is not None
        # Outcomes being written while the claim runs may put a job back
        # (a retry) after the claim's snapshot was taken.
        written_before = self._outcomes_written_total
        in_flight = bool(self._slot_freed)
        limit = slots + max(0, self.prefetch - len(self._prefetched))
        try:
            claimed = await self._job_manager.fetch_jobs(
                queues=self._queues,
                worker_id=worker_id,
                limit=limit,
                start=slots if limit > slots else None,
            )
        except Exception:
            for _ in range(slots):
                self._semaphore.release()
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
            self._misconfigured(
                f"cannot claim jobs ({query_errors.describe(exc)}): {hint}"
            )
            return False
        self._trouble.failed("claiming jobs", exc, delay)
        return True

    async def _wait_outcomes_written(self) -> None:
        while (self._slot_freed or self._starting()) and not self._stop_event.is_set():
            self._outcomes_written.clear()
            await utils.wait_any(self._outcomes_written.wait(), self._stop_event.wait())

    async def _reclaim_unstarted(self, claimed: list[jobs.Job]) -> None:
        """After a claim failed mid-way: put back the jobs claimed for this
        worker that it is not running (they would wait for its death). The
        ones it ran and wrote the outcome of stay: after a failover that lost
        the outcome, the reconcile writes it again (putting them back would
        run them a second time under the same attempt)."""
        worker_id = self._worker_id()
        assert worker_id is not None
        running = [*self._running_ids(), *self._written()]
        ours = (*claimed, *self._prefetched, *self._starting())
        running += [job.id for job in ours if job.id]
        released = await self._job_manager.release_unstarted_jobs(worker_id, running)
        self._claim_unsure = False
        self._log_put_back(
            logging.WARNING,
            "job(s) whose claim reply was lost",
            "claim_released",
            released,
        )
        if released:
            self._new_job_event.set()

    # -- stopping ----------------------------------------------------------

    async def release_prefetched(self) -> None:
        """Stopping: put the prefetched jobs not started back in the queue."""
        if not self.prefetch:
            return
        worker_id = self._worker_id()
        assert worker_id is not None
        # Starts already on their way to the database settle first (a
        # stopping worker starts none of them; see Completer._start_recorded).
        while self._starting():
            self._outcomes_written.clear()
            await self._outcomes_written.wait()
        self._prefetched.clear()
        try:
            released = await self._job_manager.release_unstarted_jobs(
                worker_id, self._running_ids()
            )
        except Exception as exc:
            if not outages.is_connection_error(exc):
                raise
            self._logger.warning(
                "prefetched jobs not put back, the database is unavailable: "
                "they will be rescued as stalled (%s)",
                outages.describe(exc),
                extra={"action": "prefetch_release_failed"},
            )
            return
        self._log_put_back(
            logging.INFO, "prefetched job(s) not started", "prefetch_released", released
        )

    def _log_put_back(
        self, level: int, what: str, action: str, released: list[int]
    ) -> None:
        if released:
            self._logger.log(
                level,
                "put back %d %s: %s",
                len(released),
                what,
                released,
                extra={"action": action, "job_ids": released},
            )

    # -- slots -------------------------------------------------------------

    def held(self) -> list[jobs.Job]:
        """The prefetched jobs waiting for a slot."""
        return list(self._prefetched)

    def slot_freed(self, context: job_context.JobContext) -> bool:
        """Whether the job's slot was freed when its code returned."""
        return id(context) in self._slot_freed

    def free_slot(self, context: job_context.JobContext) -> None:
        """The job's code has returned: its slot can take the next job."""
        if id(context) not in self._slot_freed:
            self._slot_freed.add(id(context))
            self.release_slot()

    def job_done(self, context: job_context.JobContext) -> None:
        """The job's task ended (its outcome stored, or given up on)."""
        if id(context) in self._slot_freed:
            self._slot_freed.discard(id(context))
            self._outcomes_written_total += 1
            if not self._slot_freed:
                self._outcomes_written.set()
        else:
            self.release_slot()

    def release_slot(self) -> None:
        """A free slot goes to the next prefetched job, else to the claims.

        The prefetched job holds the slot from now on, and starts once its
        'started' event is stored (``Completer.start``).
        """
        if self._prefetched and not self._stop_event.is_set():
            self._start_prefetched(self._prefetched.popleft())
        else:
            self._semaphore.release()

    def not_started(self, prefetched: list[jobs.Job]) -> None:
        """Their 'started' events were not stored: back to the front of the
        line, their slots free (a stopping worker puts them back)."""
        self._prefetched.extendleft(reversed(prefetched))
        for _ in prefetched:
            self._semaphore.release()

    def outcomes_written(self) -> None:
        """The completer wrote a group of outcomes."""
        self._outcomes_written.set()
