"""pgjobs: Postgres-native background jobs for Python, built on procrastinate."""

from pgjobs.app import App
from pgjobs.breakers import Breaker, BreakerOpen
from pgjobs.dead_letters import DeadLetter
from pgjobs.errors import (
    AlreadyEnqueued,
    BreakerNotFound,
    ConfigError,
    DatabaseUnavailable,
    DeadLetterNotFound,
    InvalidJobOptions,
    InvalidJobState,
    InvalidPayload,
    InvalidSchedule,
    JobNotFound,
    PgjobsError,
    ScheduleExists,
    ScheduleNotFound,
    SchemaError,
    TaskNotFound,
)
from pgjobs.jobs import JobStatus, get_job
from pgjobs.progress import report_progress, report_progress_async
from pgjobs.retries import FailNow, RetryIn, RetryPolicy
from pgjobs.settings import Settings, load_settings
from pgjobs.stalled import WorkerLost
from pgjobs.timeouts import JobTimeout, deadline_passed

__all__ = [
    "AlreadyEnqueued",
    "App",
    "Breaker",
    "BreakerNotFound",
    "BreakerOpen",
    "ConfigError",
    "DatabaseUnavailable",
    "DeadLetter",
    "DeadLetterNotFound",
    "FailNow",
    "InvalidJobOptions",
    "InvalidJobState",
    "InvalidPayload",
    "InvalidSchedule",
    "JobNotFound",
    "JobStatus",
    "JobTimeout",
    "PgjobsError",
    "RetryIn",
    "RetryPolicy",
    "ScheduleExists",
    "ScheduleNotFound",
    "SchemaError",
    "Settings",
    "TaskNotFound",
    "WorkerLost",
    "deadline_passed",
    "get_job",
    "load_settings",
    "report_progress",
    "report_progress_async",
]
