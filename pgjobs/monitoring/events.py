"""Job events across every worker and process, as they happen.

``async for event in pgjobs.events.stream(settings): ...`` is pgjobs' answer
to Bull's ``queue.on('completed' | 'failed' | ...)``: it reads
what every worker already writes, with each event's job, error and dead
letter: 'enqueued' events from the jobs themselves in id order (their
``deferred_at``), a running or succeeded job's 'started' and a success's
'succeeded' from the job rows by time (their ``started_at``,
``finished_at``), every other kind from ``pgjobs.event_log`` in id order
(one row per state change); ``procrastinate_events`` is the view over them
all. It polls
every ``PGJOBS_EVENTS_POLL_INTERVAL`` seconds and also wakes on procrastinate's
existing enqueue notification (``LISTEN procrastinate_any_queue_v1``), sent
while a worker waits for work (``pgjobs.notify``, pgjobs.worker.wakeups),
unless ``PGJOBS_EVENTS_LISTEN=false`` (behind a transaction pooler). Nothing is added
to the workers' hot path: no NOTIFY per event.

Guarantees: best effort and live, not a log. An event whose transaction
commits after later ids were read is still delivered if it becomes visible
within ``GAP_WAIT`` seconds (so events may arrive slightly out of id order),
and one kept in a job row if it commits within ``RUN_LATE`` seconds of its
time; a start is seen while its job runs or once it has succeeded (a job
that starts and fails between two reads is seen failing, its 'started'
read from the log); events of jobs deleted by retention before they were
read are never seen; a
reader that is not running misses nothing it could not read again from the
tables, which stay the source of truth (``pgjobs jobs show``,
``pgjobs.dead_letters``). A lost connection is reopened and reading resumes
after the last event delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import heapq
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
#: Seconds before the newest event kept in a job row that the next read
#: looks again from (a transaction that wrote one may still commit).
RUN_LATE = 2.0
#: Ids of events kept in job rows: a job's id plus these (its row in
#: ``procrastinate_events``, sql/schema/05_job_events.sql).
STARTED_ID = 1 << 62
SUCCEEDED_ID = (1 << 62) + (1 << 61)


@dataclass(frozen=True)
class JobEvent:
    """One state change of a job (a row of ``procrastinate_events``: ``id`` is
    its id there, negative for an 'enqueued' event)."""

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
    #: Where a reader resumes to get the events after this one
    #: (``stream(after=...)``, the dashboard's Last-Event-ID).
    cursor: str = ""


@dataclass(frozen=True)
class Position:
    """A reader's place: the last event log id and the last job id read, and
    the time and id of the last event kept in a job row delivered (``None``:
    from when the reader starts)."""

    log_id: int
    job_id: int
    run_at: datetime.datetime | None = None
    run_id: int = 0

    def __str__(self) -> str:
        if self.run_at is None:
            return f"{self.log_id}:{self.job_id}"
        micros = (self.run_at - _EPOCH) // datetime.timedelta(microseconds=1)
        return f"{self.log_id}:{self.job_id}:{micros}:{self.run_id}"

    @classmethod
    def parse(cls, text: str) -> Position:
        """``"<log id>:<job id>[:<time, µs>:<id>]"`` (``str()`` of a position)."""
        parts = text.split(":")
        if len(parts) not in (2, 4) or not all(
            part.lstrip("-").isdigit() for part in parts
        ):
            raise ValueError(f"not an event stream position: {text!r}")
        numbers = [int(part) for part in parts]
        if numbers[0] < 0 or numbers[1] < 0:
            raise ValueError(f"not an event stream position: {text!r}")
        if len(numbers) == 2:
            return cls(numbers[0], numbers[1])
        try:
            run_at = _EPOCH + datetime.timedelta(microseconds=numbers[2])
        except OverflowError:
            raise ValueError(f"not an event stream position: {text!r}") from None
        return cls(numbers[0], numbers[1], run_at, numbers[3])


def latest(
    target: Target,
    *,
    limit: int = 20,
    queue: str | None = None,
    task: str | None = None,
) -> list[JobEvent]:
    """The newest ``limit`` matching events, oldest first."""
    with connections.connection(target) as conn:
        start = _position(queries.fetch_one(conn, "events_position"))
        rows = queries.fetch_all(
            conn,
            "events_latest",
            upto=start.log_id,
            upto_job=start.job_id,
            upto_at=start.run_at,
            limit=limit,
            queue=queue,
            task=task,
        )
    return [JobEvent(**row, cursor=str(start)) for row in rows]


def position(conn: psycopg.Connection[Any]) -> Position:
    """Where a reader that starts now starts (after every event so far)."""
    return _position(queries.fetch_one(conn, "events_position"))


def _position(row: dict[str, Any] | None) -> Position:
    assert row is not None
    return Position(
        int(row["log_id"]), int(row["job_id"]), row["run_at"], int(row["run_id"])
    )


class _Ids:
    """One source's read position: the last id read and the recent gaps."""

    def __init__(self, last: int) -> None:
        self.last = last
        self.gaps: dict[int, float] = {}

    def seen(self, row_id: int, now: float) -> None:
        if row_id > self.last:
            if row_id - self.last <= _MAX_GAP:
                for missing in range(self.last + 1, row_id):
                    self.gaps.setdefault(missing, now)
            self.last = row_id
        else:
            self.gaps.pop(row_id, None)

    def expire(self, now: float) -> None:
        self.gaps = {i: t for i, t in self.gaps.items() if now - t < GAP_WAIT}


class _Runs:
    """The events kept in job rows: read by time from ``since`` (``RUN_LATE``
    before the newest one seen), each delivered once."""

    def __init__(self, at: datetime.datetime, run_id: int) -> None:
        self.since = at
        #: The newest delivered (time, id): a resumed reader's own, and what
        #: its cursors say.
        self.last = (at, run_id)
        self.floor = (at, run_id)
        self.seen: dict[int, datetime.datetime] = {}

    def new(self, run_id: int, at: datetime.datetime) -> bool:
        """Whether an event (by its id in ``procrastinate_events`` as kept in
        the job row) is to be delivered now; it counts as delivered."""
        if at < self.since or (at, run_id) <= self.floor or run_id in self.seen:
            return False
        self.seen[run_id] = at
        self.last = max(self.last, (at, run_id))
        return True

    def advance(self, newest: datetime.datetime | None, full: bool) -> None:
        """After a read whose newest row was at ``newest``; a full batch reads
        on from there (no step back: a batch of rows of one time could
        otherwise be read again and again)."""
        if newest is not None:
            step = newest if full else newest - datetime.timedelta(seconds=RUN_LATE)
            self.since = max(self.since, step)
        self.seen = {i: t for i, t in self.seen.items() if t >= self.since}


def _kept_id(row: dict[str, Any]) -> int:
    """A logged 'started' or 'succeeded' event's id as it was kept in its row."""
    offset = STARTED_ID if row["kind"] == "started" else SUCCEEDED_ID
    return int(row["job_id"]) + offset


def _merge_key(row: dict[str, Any]) -> tuple[bool, datetime.datetime, int]:
    at = row["at"]
    return (at is not None, at or _NO_TIME, _SOURCE_ORDER[row["source"]])


_NO_TIME = datetime.datetime.min.replace(tzinfo=datetime.UTC)
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
#: Events of one time: an enqueue first (a job's first event), then a start
#: kept in the row, then the log's.
_SOURCE_ORDER = {"job": 0, "run": 1, "log": 2}


class _Reader:
    """Reads events after the last ids read (log and jobs), re-checking
    recent gaps, and the events kept in job rows by time; each source in
    its order, the three merged by time."""

    def __init__(self, queue: str | None, task: str | None, start: Position) -> None:
        self.queue = queue
        self.task = task
        self.log = _Ids(start.log_id)
        self.jobs = _Ids(start.job_id)
        assert start.run_at is not None
        self.runs = _Runs(start.run_at, start.run_id)

    async def read(
        self, conn: psycopg.AsyncConnection[Any]
    ) -> tuple[list[JobEvent], bool]:
        """New matching events, and whether more are waiting (a full batch)."""
        rows = await queries.fetch_all_async(
            conn,
            "events_after",
            after=self.log.last,
            gaps=list(self.log.gaps),
            after_job=self.jobs.last,
            job_gaps=list(self.jobs.gaps),
            since=self.runs.since,
            queue=self.queue,
            task=self.task,
            limit=BATCH,
        )
        now = time.monotonic()
        logged = [row for row in rows if row["source"] == "log"]
        enqueued = [row for row in rows if row["source"] == "job"]
        kept = [row for row in rows if row["source"] == "run"]
        found: list[JobEvent] = []
        # Each source stays in its order (so that every event's cursor is a
        # place to resume from), the three merged by time.
        for row in heapq.merge(logged, enqueued, kept, key=_merge_key):
            source = row.pop("source")
            position = row.pop("position")
            matches = row.pop("matches")
            from_job = row.pop("from_job")
            if source == "run":
                deliver = self.runs.new(row["id"], row["at"])
            else:
                (self.log if source == "log" else self.jobs).seen(position, now)
                # Kept in its job row first: delivered from there unless it
                # left the row before any read saw it there.
                deliver = not from_job or self.runs.new(_kept_id(row), row["at"])
            if deliver and matches:
                runs_at, runs_id = self.runs.last
                cursor = str(Position(self.log.last, self.jobs.last, runs_at, runs_id))
                found.append(JobEvent(**row, cursor=cursor))
        self.log.expire(now)
        self.jobs.expire(now)
        self.runs.advance(kept[-1]["at"] if kept else None, len(kept) == BATCH)
        full = BATCH in (len(logged), len(enqueued), len(kept))
        return found, full


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
    after: Position | str | None = None,
    after_id: int | None = None,
    poll_interval: float | None = None,
    listen: bool | None = None,
    statement_timeout: float | None = None,
) -> AsyncIterator[JobEvent]:
    """Yield job events as they happen, forever (break out of the loop to stop).

    Starts with the newest ``backlog`` matching events, then every new one;
    ``after`` (an event's ``cursor``) starts after that event instead
    (resuming a reader), and so does ``after_id`` (an event's ``id``; 0: from
    the first event kept).
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
    start = Position.parse(after) if isinstance(after, str) else after
    conn = await _open(info, use_listen)
    try:
        if start is None:
            async with _bounded(conn, statement_timeout):
                rows = []
                if after_id is not None:
                    found = await queries.fetch_one_async(
                        conn, "events_position_after", id=after_id
                    )
                    if found is None:  # that event is gone: from now on
                        found = await queries.fetch_one_async(conn, "events_position")
                    start = _position(found)
                else:
                    start = _position(
                        await queries.fetch_one_async(conn, "events_position")
                    )
                    if backlog > 0:
                        rows = await queries.fetch_all_async(
                            conn,
                            "events_latest",
                            upto=start.log_id,
                            upto_job=start.job_id,
                            upto_at=start.run_at,
                            limit=backlog,
                            queue=queue,
                            task=task,
                        )
            for row in rows:
                yield JobEvent(**row, cursor=str(start))
        elif start.run_at is None:  # a cursor from before 0024: kept ones from now
            async with _bounded(conn, statement_timeout):
                now = _position(await queries.fetch_one_async(conn, "events_position"))
            start = Position(start.log_id, start.job_id, now.run_at, 0)
        reader = _Reader(queue, task, start)
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
