"""Queues admin API: pause, resume and list queues (flow control).

A paused queue still takes enqueues, but no worker starts its jobs; running
jobs finish. The state lives in ``pgjobs.paused_queues`` and every claim
reads it, so running workers see a pause or a resume at their next claim,
and a resume wakes idle workers at once (``pgjobs.resume_queue``).

Every function takes settings, a database URL, or a psycopg connection (then
it runs in the caller's transaction and the caller commits).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

import psycopg

from pgjobs.db import connections, queries
from pgjobs.enqueueing.enqueue import MAX_NAME_LENGTH
from pgjobs.errors import InvalidQueueName
from pgjobs.monitoring import views
from pgjobs.settings import Settings


@dataclass(frozen=True)
class QueueChange:
    """What ``pause_queue`` / ``resume_queue`` did."""

    queue_name: str
    #: Whether the queue is paused now.
    paused: bool
    #: False: nothing to do (already paused / not paused).
    changed: bool
    paused_at: datetime.datetime | None = None
    paused_by: str | None = None


@dataclass(frozen=True)
class QueueState:
    """One line of ``list_queues``: ``pgjobs.queue_stats`` with the pause."""

    queue_name: str
    paused: bool
    paused_at: datetime.datetime | None
    paused_by: str | None
    waiting: int
    scheduled: int
    running: int
    #: Finished (succeeded, failed) or expired within the stats window.
    succeeded: int
    failed: int
    expired: int
    dead_letters: int
    oldest_waiting_s: float


def check_queue_name(name: str) -> None:
    """Refuse a name no queue can have (procrastinate's varchar(128))."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH:
        raise InvalidQueueName(
            f"queue name must be 1 to {MAX_NAME_LENGTH} characters, got {name!r:.60}"
        )
    if "\x00" in name:
        raise InvalidQueueName("queue name may not contain NUL (\\x00) characters")


def pause_queue(
    target: Settings | str | psycopg.Connection[Any],
    name: str,
    *,
    paused_by: str | None = None,
) -> QueueChange:
    """Stop workers from starting the jobs of queue ``name`` (enqueues go on).

    ``paused_by``: who to record (default: the database role). Pausing a
    paused queue changes nothing (``changed`` False).
    """
    check_queue_name(name)
    if paused_by is not None and "\x00" in paused_by:
        raise InvalidQueueName("paused_by may not contain NUL (\\x00) characters")
    with connections.connection(target) as conn:
        changed = queries.fetch_value(
            conn, "queues_pause", queue_name=name, paused_by=paused_by
        )
        state = queries.fetch_one(conn, "queues_pause_state", queue_name=name)
    return QueueChange(
        queue_name=name,
        paused=True,
        changed=bool(changed),
        paused_at=state["paused_at"] if state else None,
        paused_by=state["paused_by"] if state else None,
    )


def resume_queue(
    target: Settings | str | psycopg.Connection[Any], name: str
) -> QueueChange:
    """Let workers start queue ``name``'s jobs again; idle workers wake at
    once. Resuming a queue that is not paused changes nothing."""
    check_queue_name(name)
    with connections.connection(target) as conn:
        changed = queries.fetch_value(conn, "queues_resume", queue_name=name)
    return QueueChange(queue_name=name, paused=False, changed=bool(changed))


def list_queues(
    target: Settings | str | psycopg.Connection[Any],
) -> list[QueueState]:
    """Every queue with jobs, recent outcomes, dead letters or a pause, by
    name; outcomes count over the stats window (``PGJOBS_STATS_WINDOW``)."""
    options = (
        views.MonitoringOptions.from_settings(target)
        if isinstance(target, Settings)
        else None
    )
    with views.reading(target, options) as conn:
        rows = queries.fetch_all(conn, "queues_list")
    return [QueueState(**row) for row in rows]
