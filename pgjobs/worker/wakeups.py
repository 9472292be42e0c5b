"""Telling enqueues that this worker waits, so that only then they notify.

A transaction that has called ``pg_notify`` takes the notification queue's
lock at commit and keeps it until its commit is flushed, so concurrent
enqueueing transactions that notify commit one at a time. pgjobs' insert
trigger notifies only when some worker waits for work (setting
``pgjobs.notify``, default ``waiting``; sql/schema/55_jobs_inserted.sql has
the protocol). A worker says it waits by holding an advisory lock, shared,
on a session of its own (the LISTEN connection's database): taken when a
claim finds no job, let go when a claim finds one: a worker that found
all it asked for is busy, and one that found some claims again
``TRICKLE`` s later (jobs trickle in: one claim every few milliseconds
costs less than a notification, and a wake-up, per job). A worker that
dies lets the lock go with its session.

An enqueue that looked before the worker took the lock did not notify: so,
once it holds the lock, the worker checks that no enqueueing transaction is
still open (``pgjobs.wakeups_settled``) and claims again; while one is, it
claims again ``RECHECK`` s later, then twice that, up to every
``RECHECK_MAX`` s, until none is (an application transaction that enqueues,
sees no waiting worker, and then runs for a while keeps the waiting workers
polling that fast for that while; an enqueue that notifies holds nothing).
Then it waits for a notification, with the poll interval as ever as a
fallback.

Only a worker that LISTENs (``pgjobs.worker.listening``) and waits for new
jobs takes part: a polling worker, or one draining its queues
(``--one-shot``), never needs a notification.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pgjobs.db import queries

#: Seconds between claims while an enqueueing transaction that may not have
#: notified is still open: the first, doubled after each up to the last.
RECHECK = 0.005
RECHECK_MAX = 0.1
#: Seconds to the next claim after one that found some jobs, not all it
#: asked for: jobs trickle in, so the worker claims again soon instead of
#: having every enqueue notify it.
TRICKLE = 0.002


class Wakeups:
    """One worker's wish to be notified (see the module docstring); ``run``
    is the worker's ``wakeups`` side task."""

    def __init__(
        self,
        connector: Any,
        *,
        listening: Callable[[], Awaitable[bool]],
        wake: Callable[[], None],
        logger: logging.Logger,
        follow_pushes: Callable[[Any, bool], Awaitable[None]] | None = None,
    ) -> None:
        self._connector = connector
        self._listening = listening
        #: Keeps a slot for a pushed job while the worker waits for work
        #: (pgjobs.worker.pushes), on this loop's connection.
        self._follow_pushes = follow_pushes
        self._wake = wake
        self._logger = logger
        self._want = False
        #: Holding the lock, and claimed again since no enqueue could have
        #: missed it.
        self.armed = False
        self.settled = False
        self._changed = asyncio.Event()
        self._active = False
        self._trickle: asyncio.TimerHandle | None = None

    def claimed(self, found: int, asked: int) -> None:
        """What a claim found: nothing (wait for a notification), some
        (claim again in ``TRICKLE`` s), or all it asked for (busy)."""
        if found == 0:
            if not (self._want and self.settled):
                self._want = True
                self._changed.set()
            return
        if self._want:
            self._want = False
            self._changed.set()
        if found < asked and self._active and self._trickle is None:
            self._trickle = asyncio.get_running_loop().call_later(
                TRICKLE, self._trickled
            )

    def poke(self) -> None:
        """Look again at what to hold (the pushes' state changed)."""
        self._changed.set()

    def _trickled(self) -> None:
        self._trickle = None
        self._wake()

    async def run(self) -> None:
        if not await self._listening():
            await asyncio.Event().wait()  # polling: nobody notifies it
        self._active = True
        self.armed = self.settled = False
        self._changed.set()  # (re)connected: take the lock if still wanted
        async with self._connector._get_standalone_connection() as conn:
            if not conn.autocommit:
                await conn.set_autocommit(True)
            try:
                await self._follow(conn)
            finally:
                self._active = self.armed = self.settled = False
                if self._trickle is not None:
                    self._trickle.cancel()
                    self._trickle = None

    async def _follow(self, conn: Any) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            if self._want and not self.armed:
                await conn.execute(queries.query("listening_wakeups_arm"))
                self.armed = True
            elif not self._want and self.armed:
                await conn.execute(queries.query("listening_wakeups_disarm"))
                self.armed = self.settled = False
            if self._want and self.armed and not self.settled:
                await self._settle(conn)
            if self._follow_pushes is not None:
                await self._follow_pushes(
                    conn, self._want and self.armed and self.settled
                )

    async def _settle(self, conn: Any) -> None:
        """Claim again once no enqueue that did not notify is still open."""
        delay = RECHECK
        while self._want:
            cursor = await conn.execute(queries.query("listening_wakeups_settled"))
            row = await cursor.fetchone()
            settled = bool(row and row[0])
            if settled:
                self.settled = True
            self._wake()  # claims after the check: sees what they committed
            if settled:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECHECK_MAX)
