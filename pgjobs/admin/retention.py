"""Retention: delete finished jobs, dead letters and error history by age and
keep-last-N per task (Bull's removeOnComplete / removeOnFail), and the
``pgjobs.task_stats`` rollups older than the longest stats window kept.

``prune()`` is what ``pgjobs prune`` calls; ``install()`` registers the same
work as a periodic task on an App when ``PGJOBS_RETENTION_*`` settings are
set. Jobs that are waiting or running (todo/doing) are never deleted, and
rows go in batches so no statement holds many locks for long.

A job's age is the time since its last event (when it finished). Jobs whose
events are gone (deleted by hand) have no age and are only pruned by
keep-last-N.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import psycopg
from croniter import croniter

from pgjobs.db import connections, queries
from pgjobs.db.connections import Target
from pgjobs.errors import ConfigError, InvalidRetention
from pgjobs.settings import Settings

logger = logging.getLogger("pgjobs.retention")

SUCCEEDED_STATUSES = ("succeeded",)
FAILED_STATUSES = ("failed", "cancelled", "aborted")
#: Name of the built-in periodic task registered by ``install()``.
TASK_NAME = "pgjobs.prune"

_DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class RetentionPolicy:
    """What to delete. ``None`` keeps that kind of row forever.

    ``succeeded_after``: succeeded jobs finished longer ago than this;
    ``failed_after``: failed, cancelled and aborted jobs (and error history
    rows) older than this; ``dead_letters_after``: dead letters created
    longer ago; ``keep_succeeded`` / ``keep_failed``: per task, at most this
    many of the most recently enqueued jobs in that group are kept.
    A job goes when either its age or its rank says so.
    ``stats_rollups_after``: ``pgjobs.task_stats``' per-minute rollups older
    than this go with every prune (default 7 days); it alone does not make a
    policy ``enabled``.
    """

    succeeded_after: datetime.timedelta | None = None
    failed_after: datetime.timedelta | None = None
    dead_letters_after: datetime.timedelta | None = None
    keep_succeeded: int | None = None
    keep_failed: int | None = None
    stats_rollups_after: datetime.timedelta | None = 7 * _DAY

    def __post_init__(self) -> None:
        for name in (
            "succeeded_after",
            "failed_after",
            "dead_letters_after",
            "stats_rollups_after",
        ):
            value = getattr(self, name)
            if value is not None and value < datetime.timedelta(0):
                raise InvalidRetention(f"{name} must not be negative")
        for name in ("keep_succeeded", "keep_failed"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise InvalidRetention(f"{name} must not be negative")

    @property
    def enabled(self) -> bool:
        return any(
            value is not None
            for name, value in asdict(self).items()
            if name != "stats_rollups_after"
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        def days(value: float | None) -> datetime.timedelta | None:
            return None if value is None else value * _DAY

        return cls(
            succeeded_after=days(settings.retention_succeeded_days),
            failed_after=days(settings.retention_failed_days),
            dead_letters_after=days(settings.retention_dead_letters_days),
            keep_succeeded=settings.retention_keep_succeeded,
            keep_failed=settings.retention_keep_failed,
            stats_rollups_after=settings.retention_stats_rollups_days * _DAY,
        )


@dataclass(frozen=True)
class PruneResult:
    """Rows deleted (or, with ``dry_run``, that would be deleted)."""

    succeeded_jobs: int
    failed_jobs: int
    dead_letters: int
    error_history: int
    stats_rollups: int
    dry_run: bool


def _job_ids(
    conn: psycopg.Connection[Any],
    statuses: Sequence[str],
    older_than: datetime.timedelta | None,
    keep: int | None,
    now: datetime.datetime | None,
    limit: int | None = None,
) -> list[int]:
    ids: set[int] = set()
    if older_than is not None:
        for status in statuses:
            rows = queries.fetch_all(
                conn,
                "retention_jobs_finished_before",
                status=status,
                older_than=older_than,
                now=now,
                limit=limit,
            )
            ids.update(row["id"] for row in rows)
    if keep is not None:
        rows = queries.fetch_all(
            conn, "retention_jobs_beyond_keep", statuses=list(statuses), keep=keep
        )
        ids.update(row["id"] for row in rows)
    return sorted(ids)


class _Throttle:
    """Pauses between two delete batches: ``pause`` seconds, and long enough
    that deleting takes at most ``duty_cycle`` of the elapsed time."""

    def __init__(self, pause: float, duty_cycle: float) -> None:
        self.pause, self.duty_cycle = pause, duty_cycle
        self._started = time.monotonic()

    def between_batches(self) -> None:
        busy = time.monotonic() - self._started
        wait = max(self.pause, busy * (1 / self.duty_cycle - 1))
        if wait > 0:
            time.sleep(wait)
        self._started = time.monotonic()


def _delete_jobs(
    conn: psycopg.Connection[Any],
    ids: list[int],
    statuses: Sequence[str],
    batch_size: int,
    throttle: _Throttle,
) -> int:
    deleted = 0
    for start in range(0, len(ids), batch_size):
        if start:
            throttle.between_batches()
        with conn.transaction():
            row = queries.fetch_one(
                conn,
                "retention_delete_jobs",
                ids=ids[start : start + batch_size],
                statuses=list(statuses),
            )
        deleted += row["deleted"] if row else 0
    return deleted


def _prune_jobs(
    conn: psycopg.Connection[Any],
    statuses: Sequence[str],
    older_than: datetime.timedelta | None,
    keep: int | None,
    *,
    dry_run: bool,
    batch_size: int,
    throttle: _Throttle,
    now: datetime.datetime | None,
) -> int:
    """Jobs in ``statuses`` finished longer than ``older_than`` ago or beyond
    the ``keep`` newest per task. Old jobs are listed one batch at a time
    (listing a minute's worth at once was itself a burst under load)."""
    if dry_run:
        return len(_job_ids(conn, statuses, older_than, keep, now))
    deleted = 0
    if older_than is not None:
        for status in statuses:
            while True:
                ids = _job_ids(conn, [status], older_than, None, now, batch_size)
                if ids:
                    deleted += _delete_jobs(conn, ids, [status], batch_size, throttle)
                if len(ids) < batch_size:
                    break
                throttle.between_batches()
    if keep is not None:
        ids = _job_ids(conn, statuses, None, keep, now)
        deleted += _delete_jobs(conn, ids, statuses, batch_size, throttle)
    return deleted


def _prune_rows(
    conn: psycopg.Connection[Any],
    kind: str,
    older_than: datetime.timedelta | None,
    *,
    dry_run: bool,
    batch_size: int,
    throttle: _Throttle,
    now: datetime.datetime | None,
) -> int:
    """Dead letters, error history or stats rollup rows older than
    ``older_than``."""
    if older_than is None:
        return 0
    if dry_run:
        row = queries.fetch_one(
            conn, f"retention_count_{kind}", older_than=older_than, now=now
        )
        return row["count"] if row else 0
    deleted = 0
    while True:
        with conn.transaction():
            row = queries.fetch_one(
                conn,
                f"retention_delete_{kind}",
                older_than=older_than,
                now=now,
                batch_size=batch_size,
            )
        count = row["deleted"] if row else 0
        deleted += count
        if count < batch_size:
            return deleted
        throttle.between_batches()


def prune(
    target: Target,
    policy: RetentionPolicy,
    *,
    dry_run: bool = False,
    batch_size: int = 1000,
    batch_pause: float = 0.0,
    duty_cycle: float = 1.0,
    now: datetime.datetime | None = None,
) -> PruneResult:
    """Delete what ``policy`` says (or count it, with ``dry_run``).

    ``now`` (an aware datetime, default the database clock) is the instant
    ages are measured from. Each batch of ``batch_size`` rows is its own
    transaction when pgjobs opens the connection. Between two batches it
    pauses ``batch_pause`` seconds, and long enough that deleting takes at
    most ``duty_cycle`` of the time (the periodic task deletes at most a
    quarter of the time: a minute's worth of finished jobs deleted in one go
    held claims back by 50-100 ms under load).
    """
    if not policy.enabled:
        raise InvalidRetention(
            "nothing to prune: give an age or keep-last count "
            "(or set PGJOBS_RETENTION_* settings)"
        )
    if batch_size < 1:
        raise InvalidRetention("batch_size must be at least 1")
    if batch_pause < 0:
        raise InvalidRetention("batch_pause must not be negative")
    if not 0 < duty_cycle <= 1:
        raise InvalidRetention("duty_cycle must be in (0, 1]")
    if now is not None and now.tzinfo is None:
        raise InvalidRetention("now must be a timezone-aware datetime")
    throttle = _Throttle(batch_pause, duty_cycle)
    counts: dict[str, int] = {}
    with connections.connection(target) as conn:
        for key, statuses, older_than, keep in (
            (
                "succeeded_jobs",
                SUCCEEDED_STATUSES,
                policy.succeeded_after,
                policy.keep_succeeded,
            ),
            ("failed_jobs", FAILED_STATUSES, policy.failed_after, policy.keep_failed),
        ):
            counts[key] = _prune_jobs(
                conn,
                statuses,
                older_than,
                keep,
                dry_run=dry_run,
                batch_size=batch_size,
                throttle=throttle,
                now=now,
            )
        for key, kind, older_than in (
            ("dead_letters", "dead_letters", policy.dead_letters_after),
            ("error_history", "error_history", policy.failed_after),
            ("stats_rollups", "stats_rollups", policy.stats_rollups_after),
        ):
            counts[key] = _prune_rows(
                conn,
                kind,
                older_than,
                dry_run=dry_run,
                batch_size=batch_size,
                throttle=throttle,
                now=now,
            )
    return PruneResult(dry_run=dry_run, **counts)


#: Share of its running time the periodic task spends deleting.
PERIODIC_DUTY_CYCLE = 0.25


class RetentionHost(Protocol):
    """What the periodic retention task needs of its App: the settings, and
    procrastinate's task and periodic decorators."""

    @property
    def settings(self) -> Settings: ...

    @property
    def task(self) -> Callable[..., Any]: ...

    @property
    def periodic(self) -> Callable[..., Any]: ...


def install(app: RetentionHost) -> None:
    """Register the periodic ``pgjobs.prune`` task when retention is configured.

    It runs on the default queue at ``PGJOBS_RETENTION_SCHEDULE`` (cron).
    """
    settings = app.settings
    policy = RetentionPolicy.from_settings(settings)
    if not policy.enabled:
        return
    if not croniter.is_valid(settings.retention_schedule):
        raise ConfigError(
            "invalid setting PGJOBS_RETENTION_SCHEDULE: "
            f"{settings.retention_schedule!r} is not a cron expression"
        )

    def prune_old_jobs(timestamp: int) -> dict[str, Any]:
        result = prune(
            settings,
            policy,
            batch_size=settings.retention_batch_size,
            batch_pause=settings.retention_batch_pause,
            duty_cycle=PERIODIC_DUTY_CYCLE,
        )
        logger.info(
            f"Retention deleted {result.succeeded_jobs} succeeded and "
            f"{result.failed_jobs} failed jobs, {result.dead_letters} dead letters",
            extra={"action": "retention", **asdict(result)},
        )
        return asdict(result)

    task = app.task(name=TASK_NAME, retry=False)(prune_old_jobs)
    app.periodic(cron=settings.retention_schedule, periodic_id=TASK_NAME)(task)
