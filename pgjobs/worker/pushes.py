"""New jobs handed straight to a waiting worker: no claim before the start.

An idle worker woken by a notification claims the job (a round trip and a
commit that waits for its flush) before it can start it: about half of its
enqueue→start latency. So a worker that waits for work keeps one free slot
for a *pushed* job and says so (``pgjobs.push_arm``): the enqueueing
transaction that finds it claims one of its new jobs for this worker and
sends the job row in the notification (``pgjobs.push_jobs``, from the insert
trigger; sql/schema/57_job_pushes.sql has the rules). The worker starts it as
it reads the notification. The claim commits, or rolls back, with the
enqueue: a rolled-back enqueue pushes nothing and leaves the slot kept.

- **Who takes pushes**: a worker that LISTENs (``pgjobs.worker.listening``),
  waits for new jobs (not ``--one-shot``), runs at concurrency 2 or more (the
  kept slot is not its only one: its own claims go on with the others) and
  has ``PGJOBS_PUSH_JOBS`` on. It keeps a slot while it waits for work
  (``pgjobs.worker.wakeups``: a claim found nothing) and gives it back as soon
  as a claim finds all it asked for.
- **Its LISTEN session** holds an advisory lock keyed by its pid for as long as
  it lives (``pgjobs.push_listen``, run on every new LISTEN connection) and
  listens on ``pgjobs_push_<pid>``. An enqueue pushes only to a target whose
  session holds that lock, so a killed worker or a lost connection is
  skipped (and its row deleted). A new LISTEN session gives up the slot
  kept for the old one.
- **Giving the slot back** (``pgjobs.push_disarm``): ``released`` (no push can
  come), ``pending`` (an enqueueing transaction that pushed to it is still
  open: asked again ``RECHECK`` s later) or ``pushed`` (the job is on its way:
  the slot is its).
- **A push that goes astray** (its notification lost with the connection):
  the job is 'doing' under this worker, which does not hold it; the
  heartbeat's reconcile puts it back (``pgjobs.worker.reconcile``). A job
  pushed to a worker that is stopping goes back to the queue unstarted
  (``pgjobs.unpush_jobs``), and a stopping worker first withdraws its slot.
- **Stats**: a pushed job's start is counted in ``pgjobs.task_rollups`` by the
  worker once it has started it (``pgjobs.count_pushed_starts``), after the
  start, not before.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
from collections.abc import Callable
from typing import Any

import psycopg
from procrastinate import jobs
from psycopg import sql

from pgjobs.db import queries
from pgjobs.worker import outages

#: Seconds between two asks for the kept slot while a push to it is open.
RECHECK = 0.02
#: Seconds a stopping worker waits for the push it was told is on its way.
ARRIVAL_TIMEOUT = 2.0
#: Seconds a stopping worker waits for an open enqueue that pushes to it.
WITHDRAW_TIMEOUT = 10.0
#: The channel of a LISTEN session (``pgjobs_push_<pid>``).
CHANNEL_PREFIX = "pgjobs_push_"


def job_from_notification(notification: dict[str, Any]) -> jobs.Job:
    """The pushed job row (JSON) as procrastinate's Job."""
    row = dict(notification["job"])
    if isinstance(row.get("args"), str):
        row["args"] = json.loads(row["args"])
    if row.get("scheduled_at"):
        row["scheduled_at"] = datetime.datetime.fromisoformat(row["scheduled_at"])
    return jobs.Job.from_row(row)


class Pushes:
    """One worker's kept slot and the jobs pushed to it (see the module
    docstring)."""

    def __init__(
        self,
        job_manager: Any,
        *,
        enabled: bool,
        semaphore: asyncio.Semaphore,
        queues: list[str] | None,
        worker_id: Callable[[], int | None],
        stopping: Callable[[], bool],
        changed: Callable[[], None],
        logger: logging.Logger,
    ) -> None:
        self._job_manager = job_manager
        self.enabled = enabled
        self._semaphore = semaphore
        self._queues = queues
        self._worker_id = worker_id
        self._stopping = stopping
        self._changed = changed
        self._logger = logger
        #: The pid of the current LISTEN session (None: none that listens
        #: on a push channel).
        self.listener: int | None = None
        #: The session the kept slot is for (None: no slot kept).
        self.kept_for: int | None = None
        #: Jobs pushed so far (a figure for tests and logs).
        self.received_total = 0
        self._arrived = asyncio.Event()
        #: Held while an arm is on its way: its row may not exist yet.
        self._arming = asyncio.Lock()
        self._to_count: list[int] = []
        self._background: set[asyncio.Task[Any]] = set()

    # -- the LISTEN session --------------------------------------------------

    async def on_listening(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """A new LISTEN session: its lock and channel (``listen_notify``)."""
        if not self.enabled:
            return
        cursor = await conn.execute(queries.query("pushes_listen"))
        row = await cursor.fetchone()
        assert row is not None
        pid = int(row[0])
        channel = sql.SQL(queries.query("pushes_listen_channel")).format(
            channel=sql.Identifier(f"{CHANNEL_PREFIX}{pid}")
        )
        await conn.execute(channel)
        self._give_back()  # kept for a session that is gone
        self.listener = pid
        self._changed()

    def _give_back(self) -> None:
        if self.kept_for is not None:
            self.kept_for = None
            self._semaphore.release()

    # -- keeping a slot ------------------------------------------------------

    async def follow(self, conn: psycopg.AsyncConnection[Any], waiting: bool) -> None:
        """Keep a slot while the worker waits for work, else give it back
        (called by the wake-ups loop on its own connection)."""
        if waiting and self.kept_for is None:
            await self._keep(conn)
        elif not waiting and self.kept_for is not None:
            await self._release(conn)

    async def _keep(self, conn: psycopg.AsyncConnection[Any]) -> None:
        listener, worker_id = self.listener, self._worker_id()
        if (
            not self.enabled
            or listener is None
            or worker_id is None
            or self._stopping()
        ):
            return
        if self._semaphore.locked():
            # Every slot taken: a claim in flight holds them all for its
            # round trip (it gives back those it found no job for).
            asyncio.get_running_loop().call_later(RECHECK, self._changed)
            return
        await self._semaphore.acquire()  # free: returns at once
        async with self._arming:
            # Kept before the row exists: a push may arrive before the reply.
            self.kept_for = listener
            try:
                await conn.execute(
                    queries.query("pushes_arm"),
                    {
                        "listener": listener,
                        "worker_id": worker_id,
                        "queues": self._queues,
                    },
                )
            except BaseException:
                if self.kept_for == listener:
                    self._give_back()
                raise
        if self.listener != listener and self.kept_for == listener:
            self._give_back()  # the session changed meanwhile

    async def _release(self, conn: psycopg.AsyncConnection[Any]) -> None:
        listener = self.kept_for
        assert listener is not None
        cursor = await conn.execute(
            queries.query("pushes_disarm"), {"listener": listener}
        )
        row = await cursor.fetchone()
        result = row[0] if row else "released"
        if result == "released":
            if self.kept_for == listener:
                self._give_back()
        elif result == "pending":
            asyncio.get_running_loop().call_later(RECHECK, self._changed)
        # 'pushed': the job is on its way and takes the slot.

    # -- pushed jobs ---------------------------------------------------------

    def received(self, channel: str, notification: dict[str, Any]) -> jobs.Job | None:
        """A pushed job: returned when the worker should start it now (it
        takes the kept slot), else None (it goes back to the queue)."""
        job = job_from_notification(notification)
        pid = int(channel.removeprefix(CHANNEL_PREFIX))
        self.received_total += 1
        self._arrived.set()
        if self.kept_for == pid and not self._stopping():
            self.kept_for = None
            assert job.id is not None
            self._count_start(job.id)
            self._changed()  # still waiting for work: keep another slot
            return job
        if self.kept_for == pid:
            self.kept_for = None
            self._semaphore.release()
        self._background_task(self._unpush([job.id] if job.id else []))
        return None

    def _count_start(self, job_id: int) -> None:
        self._to_count.append(job_id)
        if len(self._to_count) == 1:
            self._background_task(self._count_starts())

    async def _count_starts(self) -> None:
        await asyncio.sleep(0)  # the pushes read in the same loop turn, together
        ids, self._to_count = self._to_count, []
        worker_id = self._worker_id()
        if not ids or worker_id is None:
            return
        try:
            await self._job_manager.connector.execute_query_async(
                query=queries.query("pushes_count_starts"), worker_id=worker_id, ids=ids
            )
        except Exception as exc:
            if not outages.is_connection_error(exc):
                raise
            self._logger.warning(
                "the start of %d pushed job(s) is not counted in the task stats: "
                "the database is unavailable (%s)",
                len(ids),
                outages.describe(exc),
                extra={"action": "pushed_starts_not_counted", "job_ids": ids},
            )

    async def _unpush(self, ids: list[int]) -> None:
        worker_id = self._worker_id()
        if not ids or worker_id is None:
            return
        rows = await self._job_manager.connector.execute_query_all_async(
            query=queries.query("pushes_unpush"), worker_id=worker_id, ids=ids
        )
        released = [row["id"] for row in rows]
        if released:
            self._logger.info(
                "put back %d pushed job(s) this worker will not start: %s",
                len(released),
                released,
                extra={"action": "push_released", "job_ids": released},
            )

    def _background_task(self, coro: Any) -> None:
        task = asyncio.create_task(coro, name="pgjobs pushes")
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(self._log_failure)

    def _log_failure(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._logger.error(
                "pushed jobs: %s",
                task.exception(),
                extra={"action": "push_failed"},
            )

    # -- stopping ------------------------------------------------------------

    async def withdraw(self) -> None:
        """Stopping: give the kept slot back before the LISTEN connection
        closes, so that no push is left in a notification nobody reads, and
        wait for what pushes are on their way (they go back to the queue).

        An arm still on its way settles first: its row may not exist yet,
        and a disarm that found none would wait for a push that never comes
        (and leave the row behind once the arm commits)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(WITHDRAW_TIMEOUT):
                await self._arming.acquire()
                self._arming.release()
        listener = self.kept_for
        if listener is not None:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + WITHDRAW_TIMEOUT
            result = "pending"
            while result == "pending" and loop.time() < deadline:
                try:
                    row = await self._job_manager.connector.execute_query_one_async(
                        query=queries.query("pushes_disarm"), listener=listener
                    )
                except Exception as exc:
                    if not outages.is_connection_error(exc):
                        raise
                    break  # the session ends with the connection anyway
                result = row["result"]
                if result == "pending":
                    await asyncio.sleep(RECHECK)
            if result == "pushed" and self.kept_for == listener:
                self._arrived.clear()
                # Not arrived: the heartbeat's reconcile, or the rescue, takes it.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), ARRIVAL_TIMEOUT)
            if self.kept_for == listener:
                self._give_back()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
