"""Job events across every worker and process, as they happen.

``async for event in pgjobs.events.stream(settings): ...`` is pgjobs' answer
to Bull's ``queue.on('completed' | 'failed' | ...)``: it reads
``procrastinate_events`` (which every worker already writes, one row per state
change) in id order, with each event's job, error and dead letter. It polls
every ``PGJOBS_EVENTS_POLL_INTERVAL`` seconds and also wakes on procrastinate's
existing enqueue notification (``LISTEN procrastinate_any_queue_v1``), sent
while a worker waits for work (``pgjobs.notify``, pgjobs.worker.wakeups),
unless ``PGJOBS_EVENTS_LISTEN=false`` (behind a transaction pooler). Nothing is added
to the workers' hot path: no NOTIFY per event.

Guarantees: best effort and live, not a log. An event whose transaction
commits after later ids were read is still delivered if it becomes visible
within ``GAP_WAIT`` seconds (so events may arrive slightly out of id order);
events of jobs deleted by retention before they were read are never seen; a
reader that is not running misses nothing it could not read again from the
tables, which stay the source of truth (``pgjobs jobs show``,
``pgjobs.dead_letters``). A lost connection is reopened and reading resumes
after the last event delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import psycopg

from pgjobs.db import connections, queries
from pgjobs.db.connections import Target
from pgjobs.errors import DatabaseUnavailable
from pgjobs.settings import Settings

logger = logging.getLogger("pgjobs.events")

KINDS = (
    "enqueued",
    "scheduled",
    "started",
    "succeeded",
    "failed",
    "rescued",
    "interrupted",
    "dead_lettered",
    "retried",
    "cancelled",
    "abort_requested",
    "aborted",
)

#: Seconds an id skipped by a read is looked for again (a transaction that
#: took it may still commit).
GAP_WAIT = 5.0
#: Events read per query.
BATCH = 500
#: Gaps tracked at most (a wider jump is a retention delete, not commits).
_MAX_GAP = 1000


@dataclass(frozen=True)
class JobEvent:
    """One state change of a job (a row of ``procrastinate_events``)."""

    id: int
    at: datetime.datetime
    #: One of ``KINDS``.
    kind: str
    job_id: int
    task_name: str
    queue_name: str
    #: Failed attempts ('failed', 'rescued', 'interrupted', 'dead_lettered'):
    #: the error.
    error_type: str | None
    error_message: str | None
    #: 'dead_lettered': the letter written for the job.
    dead_letter_id: int | None


def latest(
    target: Target,
    *,
    limit: int = 20,
    queue: str | None = None,
    task: str | None = None,
) -> list[JobEvent]:
    """The newest ``limit`` matching events, oldest first."""
    with connections.connection(target) as conn:
        upto = queries.fetch_value(conn, "events_last_id")
        rows = queries.fetch_all(
            conn, "events_latest", upto=upto, limit=limit, queue=queue, task=task
        )
    return [JobEvent(**row) for row in rows]


class _Reader:
    """Reads events after the last id delivered, re-checking recent gaps."""

    def __init__(self, queue: str | None, task: str | None, last: int) -> None:
        self.queue = queue
        self.task = task
        self.last = last
        self.gaps: dict[int, float] = {}

    async def read(
        self, conn: psycopg.AsyncConnection[Any]
    ) -> tuple[list[JobEvent], bool]:
        """New matching events, and whether more are waiting (a full batch)."""
        rows = await queries.fetch_all_async(
            conn,
            "events_after",
            after=self.last,
            gaps=list(self.gaps),
            queue=self.queue,
            task=self.task,
            limit=BATCH,
        )
        now = time.monotonic()
        found: list[JobEvent] = []
        for row in rows:
            event_id = row["id"]
            if event_id > self.last:
                if event_id - self.last <= _MAX_GAP:
                    for missing in range(self.last + 1, event_id):
                        self.gaps.setdefault(missing, now)
                self.last = event_id
            else:
                self.gaps.pop(event_id, None)
            if row.pop("matches"):
                found.append(JobEvent(**row))
        self.gaps = {i: t for i, t in self.gaps.items() if now - t < GAP_WAIT}
        return found, len(rows) == BATCH


async def _open(info: str, listen: bool) -> psycopg.AsyncConnection[Any]:
    info, options = connections.options(info)  # no prepared statements (poolers)
    try:
        conn = await psycopg.AsyncConnection.connect(
            info, autocommit=True, connect_timeout=10, **options
        )
    except psycopg.OperationalError as exc:
        raise connections.unavailable(exc, info) from None
    if listen:
        await queries.fetch_all_async(conn, "events_listen")
    return conn


@contextlib.asynccontextmanager
async def _bounded(
    conn: psycopg.AsyncConnection[Any], statement_timeout: float | None
) -> AsyncIterator[None]:
    """One read's statements, bounded by ``statement_timeout`` (seconds) in
    a transaction of their own: a session setting would stay on the server
    connection behind a transaction pooler."""
    if statement_timeout is None:
        yield
        return
    async with conn.transaction():
        await queries.fetch_all_async(
            conn,
            "events_set_statement_timeout",
            timeout=f"{int(statement_timeout * 1000)}ms",
        )
        yield


async def _wait(
    conn: psycopg.AsyncConnection[Any], interval: float, listen: bool
) -> None:
    if not listen:
        await asyncio.sleep(interval)
        return
    with queries.translated_errors():
        async for _ in conn.notifies(timeout=interval, stop_after=1):
            pass


async def stream(
    target: Settings | str,
    *,
    queue: str | None = None,
    task: str | None = None,
    backlog: int = 0,
    after_id: int | None = None,
    poll_interval: float | None = None,
    listen: bool | None = None,
    statement_timeout: float | None = None,
) -> AsyncIterator[JobEvent]:
    """Yield job events as they happen, forever (break out of the loop to stop).

    Starts with the newest ``backlog`` matching events, then every new one;
    ``after_id`` starts after that event id instead (resuming a reader).
    ``poll_interval``/``listen`` default to ``PGJOBS_EVENTS_POLL_INTERVAL`` /
    ``PGJOBS_EVENTS_LISTEN`` (1 s / on) with settings, else 1 s / on.
    ``statement_timeout`` (seconds) bounds each read (the dashboard's).
    """
    settings = target if isinstance(target, Settings) else None
    info = connections.conninfo(settings) if settings is not None else str(target)
    interval = poll_interval or (settings.events_poll_interval if settings else 1.0)
    use_listen = (
        listen if listen is not None else (settings.events_listen if settings else True)
    )
    conn = await _open(info, use_listen)
    try:
        if after_id is None:
            async with _bounded(conn, statement_timeout):
                last = int(await queries.fetch_value_async(conn, "events_last_id"))
                rows = []
                if backlog > 0:
                    rows = await queries.fetch_all_async(
                        conn,
                        "events_latest",
                        upto=last,
                        limit=backlog,
                        queue=queue,
                        task=task,
                    )
            for row in rows:
                yield JobEvent(**row)
        else:
            last = after_id
        reader = _Reader(queue, task, last)
        while True:
            try:
                async with _bounded(conn, statement_timeout):
                    events, more = await reader.read(conn)
                for event in events:
                    yield event
                if not more:
                    await _wait(conn, interval, use_listen)
            except DatabaseUnavailable as exc:
                logger.warning(f"event stream: {exc}; reconnecting")
                await conn.close()
                conn = await _reconnect(info, use_listen, interval)
    finally:
        await conn.close()


async def _reconnect(
    info: str, listen: bool, interval: float
) -> psycopg.AsyncConnection[Any]:
    delay = interval
    while True:
        await asyncio.sleep(delay)
        try:
            return await _open(info, listen)
        except DatabaseUnavailable:
            delay = min(delay * 2, 30.0)
