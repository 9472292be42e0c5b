"""Enqueue jobs inside the caller's own transaction.

``enqueue(conn, task, **kwargs)`` inserts the job on ``conn`` — a psycopg 3
connection, or a SQLAlchemy 2 ``Session``/``Connection`` on the psycopg
driver — without committing: the job exists if and only if the caller's
transaction commits, and idle workers are woken by NOTIFY at commit.

A queueing-lock duplicate never aborts the caller's transaction: pgjobs'
``defer_jobs`` SQL function skips it, and ``on_duplicate`` decides whether
that raises ``AlreadyEnqueued`` or returns ``None``.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import procrastinate.tasks
import psycopg
from procrastinate import exceptions as procrastinate_exceptions
from procrastinate import types as procrastinate_types
from procrastinate.manager import QUEUEING_LOCK_CONSTRAINT
from psycopg.types.json import Jsonb

from pgjobs.db import queries
from pgjobs.enqueueing import deadlines
from pgjobs.errors import AlreadyEnqueued, InvalidJobOptions, TaskNotFound
from pgjobs.monitoring import tracing

if TYPE_CHECKING:
    from pgjobs.tasks import Task

OnDuplicate = Literal["raise", "ignore"]

#: procrastinate_jobs.queue_name and task_name are varchar(128).
MAX_NAME_LENGTH = 128


class TaskRegistry(Protocol):
    """Where a task name is looked up (``pgjobs.App``, procrastinate's App)."""

    @property
    def tasks(self) -> Mapping[str, procrastinate.tasks.Task[Any, Any, Any]]: ...

    def perform_import_paths(self) -> None: ...


@dataclass(frozen=True, kw_only=True)
class JobOptions:
    """How one enqueue call places its jobs. ``None`` means the task's default."""

    queue: str | None = None
    priority: int | None = None
    lock: str | None = None
    queueing_lock: str | None = None
    delay: float | datetime.timedelta | None = None
    run_at: datetime.datetime | None = None
    #: Start-by deadline (pgjobs.enqueueing.deadlines): an aware datetime,
    #: or seconds / a timedelta from now. Not both.
    expires_at: datetime.datetime | None = None
    expires_in: float | datetime.timedelta | None = None


def _check_name(kind: str, value: str) -> None:
    if not value or len(value) > MAX_NAME_LENGTH or "\x00" in value:
        raise InvalidJobOptions(
            f"{kind} name must be 1 to {MAX_NAME_LENGTH} characters, got {value!r:.60}"
        )


def _scheduled_at(options: JobOptions) -> datetime.datetime | None:
    if options.delay is not None and options.run_at is not None:
        raise InvalidJobOptions("give either delay or run_at, not both")
    if options.run_at is not None:
        if options.run_at.tzinfo is None:
            raise InvalidJobOptions(
                "run_at must be timezone-aware (e.g. datetime.now(timezone.utc))"
            )
        return options.run_at
    if options.delay is not None:
        delay = (
            options.delay
            if isinstance(options.delay, datetime.timedelta)
            else datetime.timedelta(seconds=options.delay)
        )
        if delay < datetime.timedelta(0):
            raise InvalidJobOptions("delay must not be negative")
        return datetime.datetime.now(datetime.UTC) + delay
    return None


def check_placement(
    queue: str,
    task_name: str,
    priority: int,
    lock: str | None,
    queueing_lock: str | None,
) -> None:
    """Refuse a queue, task name, priority or lock the database would reject.

    Shared by ``App.enqueue`` and procrastinate's ``defer``
    (pgjobs.enqueueing.job_manager).
    """
    _check_name("queue", queue)
    _check_name("task", task_name)
    if not -(2**31) <= priority < 2**31:
        raise InvalidJobOptions(f"priority {priority} is out of range")
    for kind, key in (("lock", lock), ("queueing_lock", queueing_lock)):
        if key is not None and "\x00" in key:
            raise InvalidJobOptions(f"{kind} may not contain NUL (\\x00) characters")


def resolve_task(
    app: TaskRegistry, task: procrastinate.tasks.Task[Any, Any, Any] | str
) -> Task[Any, Any, Any]:
    from pgjobs.tasks import Task as PgjobsTask

    if isinstance(task, PgjobsTask):
        return task
    app.perform_import_paths()
    found = app.tasks.get(str(task))
    if not isinstance(found, PgjobsTask):
        raise TaskNotFound(f"unknown task {task!r}")
    return found


def build_jobs(
    task: Task[Any, Any, Any],
    payloads: Iterable[Mapping[str, Any]],
    options: JobOptions,
) -> list[procrastinate_types.JobToDefer]:
    """Validate payloads and options into rows for ``pgjobs.defer_jobs``."""
    queue = options.queue if options.queue is not None else task.queue
    priority = options.priority if options.priority is not None else task.priority
    scheduled_at = _scheduled_at(options)
    lock = options.lock if options.lock is not None else task.lock
    queueing_lock = (
        options.queueing_lock
        if options.queueing_lock is not None
        else task.queueing_lock
    )
    check_placement(queue, task.name, priority, lock, queueing_lock)
    return [
        procrastinate_types.JobToDefer(
            queue_name=queue,
            task_name=task.name,
            priority=priority,
            lock=lock,
            queueing_lock=queueing_lock,
            args=Jsonb(task.payload.dump_json(payload), dumps=as_is),  # type: ignore[arg-type]
            scheduled_at=scheduled_at,
        )
        for payload in payloads
    ]


def _deadline(
    jobs: list[procrastinate_types.JobToDefer], options: JobOptions
) -> datetime.datetime | None:
    """The batch's start-by deadline (checked before anything is written)."""
    return deadlines.deadline(
        options.expires_at,
        options.expires_in,
        jobs[0].scheduled_at if jobs else _scheduled_at(options),
    )


def as_is(data: bytes) -> bytes:
    """Jsonb's ``dumps`` for arguments that are JSON already."""
    return data


def check_duplicates(
    ids: list[int | None],
    jobs: list[procrastinate_types.JobToDefer],
    on_duplicate: OnDuplicate,
) -> list[int | None]:
    if on_duplicate == "raise":
        for job_id, job in zip(ids, jobs, strict=True):
            if job_id is None:
                # pgjobs.defer_jobs skips the duplicate instead of violating
                # the index (the caller's transaction stays usable); the
                # cause is what procrastinate's AlreadyEnqueued carries.
                raise AlreadyEnqueued(
                    job.queueing_lock or ""
                ) from procrastinate_exceptions.UniqueViolation(
                    f"queueing lock {job.queueing_lock!r} is held by a waiting job",
                    constraint_name=QUEUEING_LOCK_CONSTRAINT,
                    queueing_lock=job.queueing_lock,
                )
    return ids


def psycopg_connection(conn: Any) -> psycopg.Connection[Any]:
    """The psycopg connection under ``conn`` (psycopg, SQLAlchemy 2, Django)."""
    if isinstance(conn, psycopg.Connection):
        return conn
    if type(conn).__module__.startswith("django."):
        from pgjobs.contrib.django.connection import psycopg_connection_of

        return psycopg_connection_of(conn)
    try:
        from sqlalchemy import Connection as SAConnection
        from sqlalchemy.orm import Session
    except ImportError:  # pragma: no cover - sqlalchemy is a dependency
        SAConnection = Session = None  # type: ignore[assignment,misc]
    if Session is not None and isinstance(conn, Session):
        conn = conn.connection()
    if SAConnection is not None and isinstance(conn, SAConnection):
        if not conn.in_transaction():
            # What SQLAlchemy's autobegin would do on its own execute(): the
            # caller's commit()/rollback() then covers the job too.
            conn.begin()
        driver = conn.connection.driver_connection
        if isinstance(driver, psycopg.Connection):
            return driver
        raise InvalidJobOptions(
            "the SQLAlchemy engine must use the psycopg 3 driver "
            "(URL postgresql+psycopg://...)"
        )
    raise InvalidJobOptions(
        f"cannot enqueue on a {type(conn).__name__}: pass a psycopg Connection, "
        "a SQLAlchemy Session/Connection or Django's connection"
    )


async def async_psycopg_connection(conn: Any) -> psycopg.AsyncConnection[Any]:
    """The psycopg ``AsyncConnection`` under ``conn`` (psycopg, or SQLAlchemy
    2's ``AsyncSession``/``AsyncConnection`` on ``postgresql+psycopg``)."""
    if isinstance(conn, psycopg.AsyncConnection):
        return conn
    try:
        from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
    except ImportError:  # pragma: no cover - sqlalchemy is a dependency
        AsyncConnection = AsyncSession = None  # type: ignore[assignment,misc]
    if AsyncSession is not None and isinstance(conn, AsyncSession):
        conn = await conn.connection()  # begins the session's transaction
    if AsyncConnection is not None and isinstance(conn, AsyncConnection):
        if not conn.in_transaction():
            await conn.begin()  # as SQLAlchemy's autobegin: commit() covers the job
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        if isinstance(driver, psycopg.AsyncConnection):
            return driver
        raise InvalidJobOptions(
            "the SQLAlchemy async engine must use the psycopg 3 driver "
            "(URL postgresql+psycopg://...)"
        )
    raise InvalidJobOptions(
        f"enqueue_async needs a psycopg AsyncConnection or a SQLAlchemy "
        f"AsyncSession/AsyncConnection, got {type(conn).__name__}"
    )


def _as_json(jobs: list[procrastinate_types.JobToDefer]) -> Jsonb:
    """The batch as one jsonb array for ``pgjobs.defer_jobs_json``.

    The jobs come from one ``build_jobs`` call, so they share everything but
    their arguments, which are JSON already: the array is written around
    them (about 20 µs a job less than a dict per job encoded again).
    """
    first = jobs[0]
    shared = {
        "queue_name": first.queue_name,
        "task_name": first.task_name,
        "priority": first.priority,
        "lock": first.lock,
        "queueing_lock": first.queueing_lock,
        "scheduled_at": first.scheduled_at.isoformat() if first.scheduled_at else None,
        "args": None,
    }
    # '{"queue_name":...,"args":' then each job's arguments and '}'.
    head = json.dumps(shared, separators=(",", ":")).encode()[: -len(b"null}")]
    return Jsonb(
        b"[" + b",".join(head + job.args.obj + b"}" for job in jobs) + b"]",  # type: ignore[attr-defined]
        dumps=as_is,
    )


def _insert_many(
    jobs: list[procrastinate_types.JobToDefer],
) -> tuple[str, dict[str, Any]]:
    """The named query and parameters that insert a batch of ``build_jobs``.

    Without a queueing lock the batch is one plain INSERT of its arguments'
    jsonb array (``enqueue_insert_jobs``); with one, ``defer_jobs_json``
    skips the jobs whose lock is held.
    """
    first = jobs[0]
    if first.queueing_lock is not None:
        return "enqueue_defer_jobs_json", {"jobs": _as_json(jobs)}
    args = b"[" + b",".join(job.args.obj for job in jobs) + b"]"  # type: ignore[attr-defined]
    return "enqueue_insert_jobs", {
        "queue_name": first.queue_name,
        "task_name": first.task_name,
        "priority": first.priority,
        "lock": first.lock,
        "scheduled_at": first.scheduled_at,
        "args": Jsonb(args, dumps=as_is),
    }


def _one(job: procrastinate_types.JobToDefer) -> dict[str, Any]:
    """Parameters of ``defer_one``."""
    return {
        "queue_name": job.queue_name,
        "task_name": job.task_name,
        "priority": job.priority,
        "lock": job.lock,
        "queueing_lock": job.queueing_lock,
        "args": job.args,
        "scheduled_at": job.scheduled_at,
    }


def enqueue_many(
    conn: Any,
    app: TaskRegistry,
    task: procrastinate.tasks.Task[Any, Any, Any] | str,
    payloads: Iterable[Mapping[str, Any]],
    options: JobOptions = JobOptions(),
    on_duplicate: OnDuplicate = "raise",
) -> list[int | None]:
    """Insert one job per payload on ``conn``, in one round trip."""
    jobs = build_jobs(resolve_task(app, task), payloads, options)
    expires_at = _deadline(jobs, options)
    if not jobs:
        return []
    pg_conn = psycopg_connection(conn)
    if len(jobs) == 1:
        ids = [queries.fetch_value(pg_conn, "enqueue_defer_one", **_one(jobs[0]))]
    else:
        name, params = _insert_many(jobs)
        ids = queries.fetch_value(pg_conn, name, **params)
    deadlines.store(pg_conn, ids, expires_at)
    tracing.store(pg_conn, ids)  # the active span's context, if any
    return check_duplicates(list(ids), jobs, on_duplicate)


async def enqueue_many_async(
    conn: Any,
    app: TaskRegistry,
    task: procrastinate.tasks.Task[Any, Any, Any] | str,
    payloads: Iterable[Mapping[str, Any]],
    options: JobOptions = JobOptions(),
    on_duplicate: OnDuplicate = "raise",
) -> list[int | None]:
    """``enqueue_many`` on a psycopg ``AsyncConnection`` or a SQLAlchemy
    ``AsyncSession``/``AsyncConnection``."""
    conn = await async_psycopg_connection(conn)
    jobs = build_jobs(resolve_task(app, task), payloads, options)
    expires_at = _deadline(jobs, options)
    if not jobs:
        return []
    if len(jobs) == 1:
        ids = [
            await queries.fetch_value_async(conn, "enqueue_defer_one", **_one(jobs[0]))
        ]
    else:
        name, params = _insert_many(jobs)
        ids = await queries.fetch_value_async(conn, name, **params)
    await deadlines.store_async(conn, ids, expires_at)
    await tracing.store_async(conn, ids)
    return check_duplicates(list(ids), jobs, on_duplicate)
