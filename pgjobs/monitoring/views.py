"""Monitoring admin API: the ``pgjobs.*`` views as typed results.

Everything here reads the monitoring views only (never job arguments), so a
login role that is a member of ``pgjobs_monitor`` can call all of it. The
views' tunables (``pgjobs.stats_window``, ``pgjobs.stalled_after``...) are
database settings; ``MonitoringOptions`` overrides them for one call.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any

import psycopg

from pgjobs.db import connections, queries
from pgjobs.db.connections import Target
from pgjobs.settings import Settings

_COUNTS = frozenset({"dead_letter_threshold", "max_dead_rows"})


@dataclass(frozen=True)
class MonitoringOptions:
    """Per-call values of the views' tunables; ``None`` keeps the database's.

    Seconds, except ``dead_letter_threshold`` and ``max_dead_rows`` (counts).
    """

    stats_window: float | None = None
    stalled_after: float | None = None
    max_latency: float | None = None
    dead_letter_window: float | None = None
    dead_letter_threshold: int | None = None
    max_dead_rows: int | None = None
    max_replication_lag: float | None = None
    max_xmin_age: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> MonitoringOptions:
        values: dict[str, Any] = {
            "stats_window": settings.stats_window,
            "stalled_after": settings.stalled_after,
            "max_latency": settings.health_max_latency,
            "dead_letter_window": settings.health_dead_letter_window,
            "dead_letter_threshold": settings.health_dead_letter_threshold,
            "max_dead_rows": settings.health_max_dead_rows,
            "max_replication_lag": settings.health_max_replication_lag,
            "max_xmin_age": settings.health_max_xmin_age,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def database_settings(self) -> dict[str, str]:
        """The ``pgjobs.*`` settings to apply, as Postgres text values."""
        found: dict[str, str] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if value is None:
                continue
            if field.name in _COUNTS:
                found["pgjobs." + field.name] = str(int(value))
            else:
                found["pgjobs." + field.name] = f"{float(value)} seconds"
        return found


@dataclass(frozen=True)
class QueueStats:
    queue_name: str
    waiting: int
    scheduled: int
    running: int
    succeeded: int
    failed: int
    dead_letters: int
    oldest_waiting_s: float
    #: No worker starts its jobs (``pgjobs queues pause``).
    paused: bool = False
    #: Jobs that ended unstarted at their start-by deadline, in the window.
    expired: int = 0


@dataclass(frozen=True)
class TaskStats:
    task_name: str
    started: int
    runs: int
    succeeded: int
    failed: int
    retried: int
    aborted: int
    failure_rate: float | None
    p50_s: float | None
    p95_s: float | None
    p99_s: float | None
    mean_s: float | None
    max_s: float | None
    mean_wait_s: float | None
    #: Attempts a worker shutdown handed back without counting them (not
    #: failures: see pgjobs.worker.interruptions).
    interrupted: int
    #: Jobs that ended unstarted at their start-by deadline, in the window.
    expired: int = 0


@dataclass(frozen=True)
class WorkerStatus:
    worker_id: int
    last_heartbeat: datetime.datetime
    heartbeat_age_s: float
    alive: bool
    running_jobs: int


@dataclass(frozen=True)
class StalledJob:
    job_id: int
    task_name: str
    queue_name: str
    worker_id: int | None
    attempts: int
    started_at: datetime.datetime | None
    last_heartbeat: datetime.datetime | None
    heartbeat_age_s: float | None


@dataclass(frozen=True)
class BreakerSummary:
    name: str
    state: str
    failure_count: int
    failure_threshold: int
    opened_at: datetime.datetime | None
    reopens_at: datetime.datetime | None


@dataclass(frozen=True)
class Problem:
    """One row of ``pgjobs.health``."""

    check: str
    subject: str
    detail: str
    severity: str


@dataclass(frozen=True)
class Snapshot:
    """Every view at one moment (one transaction): for stats and metrics."""

    queues: list[QueueStats]
    tasks: list[TaskStats]
    workers: list[WorkerStatus]
    stalled_jobs: list[StalledJob]
    breakers: list[BreakerSummary]
    problems: list[Problem]


@contextmanager
def reading(
    target: Target, options: MonitoringOptions | None = None
) -> Iterator[psycopg.Connection[Any]]:
    """A connection in a transaction with ``options`` applied to the views."""
    with connections.connection(target) as conn, conn.transaction():
        for name, value in (options or MonitoringOptions()).database_settings().items():
            queries.fetch_all(conn, "monitoring_set_local", setting=name, value=value)
        yield conn


def _queues(conn: psycopg.Connection[Any]) -> list[QueueStats]:
    return [QueueStats(**r) for r in queries.fetch_all(conn, "monitoring_queue_stats")]


def _tasks(conn: psycopg.Connection[Any]) -> list[TaskStats]:
    return [TaskStats(**r) for r in queries.fetch_all(conn, "monitoring_task_stats")]


def _workers(conn: psycopg.Connection[Any]) -> list[WorkerStatus]:
    return [WorkerStatus(**r) for r in queries.fetch_all(conn, "monitoring_workers")]


def _stalled(conn: psycopg.Connection[Any]) -> list[StalledJob]:
    rows = queries.fetch_all(conn, "monitoring_stalled_jobs")
    return [StalledJob(**r) for r in rows]


def _breakers(conn: psycopg.Connection[Any]) -> list[BreakerSummary]:
    rows = queries.fetch_all(conn, "monitoring_breaker_states")
    return [BreakerSummary(**r) for r in rows]


def _problems(conn: psycopg.Connection[Any]) -> list[Problem]:
    return [Problem(**r) for r in queries.fetch_all(conn, "monitoring_health")]


def queue_stats(
    target: Target, options: MonitoringOptions | None = None
) -> list[QueueStats]:
    """``pgjobs.queue_stats``: per queue, by name."""
    with reading(target, options) as conn:
        return _queues(conn)


def task_stats(
    target: Target, options: MonitoringOptions | None = None
) -> list[TaskStats]:
    """``pgjobs.task_stats``: per task over the stats window, by name."""
    with reading(target, options) as conn:
        return _tasks(conn)


def workers(
    target: Target, options: MonitoringOptions | None = None
) -> list[WorkerStatus]:
    """``pgjobs.workers``: registered workers, by id."""
    with reading(target, options) as conn:
        return _workers(conn)


def stalled_jobs(
    target: Target, options: MonitoringOptions | None = None
) -> list[StalledJob]:
    """``pgjobs.stalled_jobs``: running jobs whose worker stopped beating."""
    with reading(target, options) as conn:
        return _stalled(conn)


def health(target: Target, options: MonitoringOptions | None = None) -> list[Problem]:
    """``pgjobs.health``: one ``Problem`` per issue, critical first; [] if healthy."""
    with reading(target, options) as conn:
        return _problems(conn)


def snapshot(target: Target, options: MonitoringOptions | None = None) -> Snapshot:
    """All views read in one transaction."""
    with reading(target, options) as conn:
        return Snapshot(
            queues=_queues(conn),
            tasks=_tasks(conn),
            workers=_workers(conn),
            stalled_jobs=_stalled(conn),
            breakers=_breakers(conn),
            problems=_problems(conn),
        )
