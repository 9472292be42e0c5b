"""Start-by deadlines: the ``expires_at`` / ``expires_in`` enqueue options.

A job not started by its deadline never starts (nor does a retry due after
it): the claim skips it and it ends ``cancelled`` with ``expired_at`` set in
``pgjobs.job_deadlines`` (see sql/schema/31_job_deadlines.sql). The deadline
is stored beside the job, in the enqueue's own transaction.
"""

from __future__ import annotations

import contextvars
import datetime
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from procrastinate import jobs as procrastinate_jobs
from procrastinate import types as procrastinate_types

from pgjobs.db import queries
from pgjobs.errors import InvalidJobOptions

Expiry = float | datetime.timedelta | None


def deadline(
    expires_at: datetime.datetime | None,
    expires_in: Expiry,
    scheduled_at: datetime.datetime | None = None,
) -> datetime.datetime | None:
    """The deadline the options give, or None; refuses bad values.

    ``expires_at`` must be timezone-aware (as ``run_at``: a naive datetime
    is refused rather than guessed); ``expires_in`` is seconds or a
    timedelta from now, not negative. A deadline at or before the job's run
    time could never be met and is refused too.
    """
    if expires_at is not None and expires_in is not None:
        raise InvalidJobOptions("give either expires_at or expires_in, not both")
    if expires_at is not None:
        if not isinstance(expires_at, datetime.datetime):
            raise InvalidJobOptions(
                f"expires_at must be a datetime, got {type(expires_at).__name__}"
            )
        if expires_at.tzinfo is None or expires_at.utcoffset() is None:
            raise InvalidJobOptions(
                "expires_at must be timezone-aware (e.g. datetime.now(timezone.utc))"
            )
        found = expires_at
    elif expires_in is not None:
        if isinstance(expires_in, datetime.timedelta):
            span = expires_in
        elif isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
            if not math.isfinite(expires_in):
                raise InvalidJobOptions("expires_in must be a finite number of seconds")
            span = datetime.timedelta(seconds=expires_in)
        else:
            raise InvalidJobOptions(
                "expires_in must be seconds or a timedelta, "
                f"got {type(expires_in).__name__}"
            )
        if span < datetime.timedelta(0):
            raise InvalidJobOptions("expires_in must not be negative")
        found = datetime.datetime.now(datetime.UTC) + span
    else:
        return None
    if scheduled_at is not None and found <= scheduled_at:
        raise InvalidJobOptions(
            f"the job expires ({found.isoformat()}) before it may start "
            f"({scheduled_at.isoformat()}): it could never run"
        )
    return found


def _params(ids: Sequence[int | None], expires_at: datetime.datetime) -> dict[str, Any]:
    return {"ids": [i for i in ids if i is not None], "expires_at": expires_at}


def store(
    conn: psycopg.Connection[Any],
    ids: Sequence[int | None],
    expires_at: datetime.datetime | None,
) -> None:
    """Store the deadline of the jobs ``ids`` on ``conn`` (its transaction)."""
    if expires_at is not None:
        queries.fetch_all(conn, "deadlines_store", **_params(ids, expires_at))


async def store_async(
    conn: psycopg.AsyncConnection[Any],
    ids: Sequence[int | None],
    expires_at: datetime.datetime | None,
) -> None:
    if expires_at is not None:
        await queries.fetch_all_async(
            conn, "deadlines_store", **_params(ids, expires_at)
        )


def store_on(
    connector: Any,
    connection: Any | None,
    ids: Sequence[int | None],
    expires_at: datetime.datetime | None,
) -> None:
    """``store`` through a procrastinate sync connector (``task.defer()``)."""
    if expires_at is None:
        return
    query = queries.query("deadlines_store")
    params = _params(ids, expires_at)
    if connection is not None:
        connector.execute_query_all_with_connection(connection, query=query, **params)
    else:
        connector.execute_query_all(query=query, **params)


async def store_on_async(
    connector: Any,
    connection: Any | None,
    ids: Sequence[int | None],
    expires_at: datetime.datetime | None,
) -> None:
    if expires_at is None:
        return
    query = queries.query("deadlines_store")
    params = _params(ids, expires_at)
    if connection is not None:
        await connector.execute_query_all_async_with_connection(
            connection, query=query, **params
        )
    else:
        await connector.execute_query_all_async(query=query, **params)


#: The deadline of the ``task.configure(...).defer()`` call in progress, for
#: pgjobs' JobManager (procrastinate's Job has no field for it).
_pending: contextvars.ContextVar[datetime.datetime | None] = contextvars.ContextVar(
    "pgjobs_pending_deadline", default=None
)


def pending() -> datetime.datetime | None:
    """The deadline of the jobs being deferred now (``DeadlineDeferrer``)."""
    return _pending.get()


@contextmanager
def _deferring(expires_at: datetime.datetime) -> Iterator[None]:
    token = _pending.set(expires_at)
    try:
        yield
    finally:
        _pending.reset(token)


class DeadlineDeferrer(procrastinate_jobs.JobDeferrer):
    """procrastinate's ``JobDeferrer`` whose jobs get a start-by deadline."""

    def __init__(
        self, deferrer: procrastinate_jobs.JobDeferrer, expires_at: datetime.datetime
    ) -> None:
        super().__init__(deferrer.job_manager, deferrer.job, deferrer.connection)
        self.expires_at = expires_at

    def defer(self, **task_kwargs: procrastinate_types.JSONValue) -> int:
        with _deferring(self.expires_at):
            job_id: int = super().defer(**task_kwargs)
        return job_id

    async def defer_async(self, **task_kwargs: procrastinate_types.JSONValue) -> int:
        with _deferring(self.expires_at):
            return await super().defer_async(**task_kwargs)

    def batch_defer(self, *task_kwargs: procrastinate_types.JSONDict) -> list[int]:
        with _deferring(self.expires_at):
            job_ids: list[int] = super().batch_defer(*task_kwargs)
        return job_ids

    async def batch_defer_async(
        self, *task_kwargs: procrastinate_types.JSONDict
    ) -> list[int]:
        with _deferring(self.expires_at):
            return await super().batch_defer_async(*task_kwargs)
