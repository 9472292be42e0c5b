"""A worker's ``doing`` rows against what it actually runs (failovers).

With asynchronous replication a failover loses the primary's last commits
(its replication lag window): a worker reconnecting to the promoted standby
may find jobs it finished still ``doing`` under its id (the outcome was
lost), jobs it never saw claimed for it, or its own worker row gone. Before,
those jobs stayed ``doing`` under the live worker until it exited, and then
came back as ``WorkerLost`` and were dead-lettered although they had
succeeded.

Now every heartbeat carries the ids of the jobs the worker holds (running,
prefetched, outcome being written) and the worker's token (its process; a
worker id given out in the lag window is given out again after a failover).
``pgjobs.worker_heartbeat`` stores them in ``pgjobs.worker_states`` and
returns the worker's ``doing`` jobs it does not hold (*unheld*) and its
*orphans*, the jobs unheld at two heartbeats in a row (a claim whose reply
is still on its way at one heartbeat is held at the next). The worker then:

- writes again the outcome of each orphan it remembers having written: it
  keeps the outcomes of its last ``OUTCOME_WINDOW`` seconds of connected
  time (at most ``MAX_OUTCOMES``; the ones written before an outage are kept
  until the first reconcile after it);
- puts the other orphans back in the queue (``todo``, no attempt counted).

A beat comes at once after every outage (``Outage.on_recovered``), and the
confirming beat ``CONFIRM_AFTER`` seconds after a beat that found unheld
jobs, so a failover's leftovers are settled within about a second of the
reconnect; between outages a stray ``doing`` row lasts at most about one
heartbeat interval. ``pgjobs.health_orphaned_jobs`` reports orphans that
stay (a worker that could not settle them).

The heartbeat also brings back a worker row lost in a failover under the
same id, and registers the worker anew (moving its held jobs along) when
another process took that id meanwhile.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from procrastinate import jobs

logger = logging.getLogger("pgjobs.worker")

#: Seconds of written outcomes a worker remembers (longer than any
#: replication lag a failover may lose).
OUTCOME_WINDOW = 60.0
#: At most this many remembered outcomes (about 100 bytes each).
MAX_OUTCOMES = 20_000
#: Seconds between a beat that found unheld jobs and the confirming beat.
CONFIRM_AFTER = 1.0


@dataclass(frozen=True)
class _Outcome:
    written_at: float
    status: jobs.Status
    delete: bool
    #: Failures and retries: writes the same failure again (None: a
    #: success or an abort, written by pgjobs.finish_jobs).
    rewrite: Callable[[], Awaitable[None]] | None = None


class Reconciler:
    """One worker's heartbeat and reconcile (see the module docstring).

    ``held``: the ids of the jobs the worker holds now.
    """

    def __init__(self, job_manager: Any, held: Callable[[], list[int]]) -> None:
        self.job_manager = job_manager
        self.token = uuid.uuid4()
        self._held = held
        self._outcomes: collections.OrderedDict[int, _Outcome] = (
            collections.OrderedDict()
        )
        #: Start of the oldest outage not reconciled since (monotonic).
        self._outage_started: float | None = None
        self._outage_pending = False
        self._wake: asyncio.Event | None = None
        self._next_beat: float | None = 0.0  # the first beat comes at once

    # -- what the worker reports -------------------------------------------

    def written(self, job_id: int, status: jobs.Status, delete: bool) -> None:
        """A success or abort was stored (group finish)."""
        self._remember(job_id, _Outcome(time.monotonic(), status, delete))

    def written_failure(
        self,
        job_id: int,
        status: jobs.Status,
        rewrite: Callable[[], Awaitable[None]],
    ) -> None:
        """A failed attempt (retry or final failure) was stored."""
        self._remember(job_id, _Outcome(time.monotonic(), status, False, rewrite))

    def remembered(self) -> list[int]:
        """The jobs whose written outcome it keeps: a failover may have lost
        it, and the reconcile writes it again (never put them back)."""
        return list(self._outcomes)

    def reconnected(self, outage_started: float) -> None:
        """An outage ended: beat (and reconcile) now."""
        if self._outage_started is None or outage_started < self._outage_started:
            self._outage_started = outage_started
        self._outage_pending = True
        self._beat_in(0.0)

    def _remember(self, job_id: int, outcome: _Outcome) -> None:
        outcomes = self._outcomes
        outcomes.pop(job_id, None)
        outcomes[job_id] = outcome
        horizon = outcome.written_at - OUTCOME_WINDOW
        if self._outage_started is not None:
            horizon = min(horizon, self._outage_started - OUTCOME_WINDOW)
        while outcomes:
            oldest = next(iter(outcomes.values()))
            if oldest.written_at >= horizon and len(outcomes) <= MAX_OUTCOMES:
                break
            outcomes.popitem(last=False)

    # -- the heartbeat -------------------------------------------------------

    def _beat_in(self, seconds: float) -> None:
        at = time.monotonic() + seconds
        if self._next_beat is None or at < self._next_beat:
            self._next_beat = at
        if self._wake is not None:
            self._wake.set()

    async def wait(self, interval: float) -> None:
        """Sleep until the next beat is due: ``interval`` after the last one,
        sooner after an outage or to confirm unheld jobs."""
        if self._wake is None:
            self._wake = asyncio.Event()
        while True:
            now = time.monotonic()
            due = self._next_beat if self._next_beat is not None else now + interval
            if self._next_beat is None:
                self._next_beat = due
            if due <= now:
                self._next_beat = None
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=due - now)

    async def beat(self, worker_id: int) -> int:
        """One heartbeat and what it calls for; returns the worker's id (a
        new one if another process had taken it)."""
        outage_pending = self._outage_pending
        new_id, unheld, orphans = await self.job_manager.heartbeat(
            worker_id, self.token, self._held()
        )
        if new_id != worker_id:
            logger.warning(
                "worker id %s belongs to another worker now (ids given out in a "
                "failover's replication lag window are given out again): "
                "registered again as worker %s",
                worker_id,
                new_id,
                extra={"action": "worker_reregistered", "worker_id": new_id},
            )
        if orphans:
            held = set(self._held())
            await self._settle(new_id, [job for job in orphans if job not in held])
        if unheld:
            self._beat_in(CONFIRM_AFTER)  # confirm them soon, not in an interval
        elif outage_pending and self._outage_pending:
            # Everything it had before the outage is accounted for.
            self._outage_pending = False
            self._outage_started = None
        return int(new_id)

    async def _settle(self, worker_id: int, orphans: list[int]) -> None:
        rewritten: list[int] = []
        finish: list[tuple[int, jobs.Status, bool]] = []
        for job_id in orphans:
            outcome = self._outcomes.get(job_id)
            if outcome is None:
                continue
            if outcome.rewrite is not None:
                await outcome.rewrite()
                rewritten.append(job_id)
            else:
                finish.append((job_id, outcome.status, outcome.delete))
        if finish:
            done, _ = await self.job_manager.finish_jobs(finish, worker_id=worker_id)
            rewritten += sorted(done)
        lost = [job_id for job_id in orphans if job_id not in self._outcomes]
        released = await self.job_manager.release_jobs(worker_id, lost) if lost else []
        if rewritten:
            logger.warning(
                "wrote again the outcome of %d job(s) the database had lost "
                "(a failover?): %s",
                len(rewritten),
                rewritten,
                extra={"action": "outcomes_rewritten", "job_ids": rewritten},
            )
        if released:
            logger.warning(
                "put back %d job(s) marked running on this worker that it does "
                "not run (a failover?): %s",
                len(released),
                released,
                extra={"action": "orphans_released", "job_ids": released},
            )
