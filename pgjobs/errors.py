"""pgjobs exceptions.

Every error a user can cause or meet in operation is a ``PgjobsError``: the CLI
prints its message as one line and exits non-zero, without a traceback.
"""

from __future__ import annotations

from procrastinate import exceptions as procrastinate_exceptions


class PgjobsError(Exception):
    """Base class of every error pgjobs raises on purpose."""

    exit_code = 1


class ConfigError(PgjobsError):
    """A setting is missing or invalid."""

    exit_code = 2


class DatabaseUnavailable(PgjobsError):
    """The database cannot be reached (down, wrong host, wrong credentials)."""

    exit_code = 3


class ReadOnlyDatabase(PgjobsError):
    """The database refuses writes (hot standby, default_transaction_read_only)."""


class SchemaError(PgjobsError):
    """The database schema is missing, outdated or in an unexpected state."""


class AppNotFound(PgjobsError):
    """The ``--app`` dotted path does not name a pgjobs/procrastinate App."""

    exit_code = 2


class TaskNotFound(PgjobsError):
    """No task is registered under that name."""


class InvalidPayload(PgjobsError):
    """Task arguments were refused at enqueue (nothing was written)."""


class InvalidJobOptions(PgjobsError):
    """Enqueue options (queue, priority, schedule, locks) are invalid."""


class InvalidRetryPolicy(PgjobsError, ValueError):
    """A retry policy's attempts, delays, factor or jitter are invalid.

    Also a ``ValueError``, which it was raised as before it had a name."""


class InvalidBreaker(InvalidJobOptions):
    """A circuit breaker's name, thresholds or recovery window are invalid.

    A subclass of ``InvalidJobOptions``, which it was raised as before."""


class InvalidRetention(InvalidJobOptions):
    """Retention ages, batch sizes, pauses or duty cycle are invalid.

    A subclass of ``InvalidJobOptions``, which it was raised as before."""


class AlreadyEnqueued(PgjobsError, procrastinate_exceptions.AlreadyEnqueued):
    """A job with the same queueing lock is already waiting."""

    def __init__(self, queueing_lock: str) -> None:
        super().__init__(
            f"a job with queueing lock {queueing_lock!r} is already waiting"
        )
        self.queueing_lock = queueing_lock


class InvalidQueueName(PgjobsError):
    """A queue name is empty, too long or contains NUL (nothing was written)."""


class JobNotFound(PgjobsError):
    """No job has that id."""


class InvalidJobState(PgjobsError):
    """The job exists but is not in a state that allows this operation."""


class DeadLetterNotFound(PgjobsError):
    """No dead letter has that id."""


class BreakerNotFound(PgjobsError):
    """No circuit breaker has that name."""


class InvalidLimit(InvalidJobOptions):
    """A concurrency or rate limit is invalid ("ten per second", 0, "5/week").

    A subclass of ``InvalidJobOptions``: raised where task options are."""


class LimitNotFound(PgjobsError):
    """No limit of that task (and kind) is declared or set."""


class InvalidSchedule(PgjobsError):
    """A schedule's cron expression, interval or options are invalid."""


class ScheduleNotFound(PgjobsError):
    """No schedule (runtime or code-declared periodic task) has that name."""


class ScheduleExists(PgjobsError):
    """A schedule with that name already exists."""


class PermissionDenied(PgjobsError):
    """The database role may not read or change this (e.g. ``pgjobs_monitor``)."""


class QueryTimeout(PgjobsError):
    """A statement ran past its ``statement_timeout`` and was cancelled."""
