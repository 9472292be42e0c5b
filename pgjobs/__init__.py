"""pgjobs: Postgres-native background jobs for Python, built on procrastinate.

The package is grouped by concern: ``db`` (database, SQL, schema),
``enqueueing``, ``worker``, ``failures``, ``scheduling``, ``monitoring``,
``admin`` (job rows, queues, retention), ``cli``, ``dashboard``, ``contrib`` (Django,
FastAPI) and ``testing``. The modules users import by their short names
(``from pgjobs import schedules, schema, database, ...``) stay available under
those names, as attributes and as ``pgjobs.<name>`` modules.
"""

import sys

from pgjobs import scheduling as schedules
from pgjobs.admin import jobs, limits, queues, retention
from pgjobs.admin.jobs import JobStatus, get_job
from pgjobs.app import App
from pgjobs.db import connections as database
from pgjobs.db import schema
from pgjobs.errors import (
    AlreadyEnqueued,
    AppNotFound,
    BreakerNotFound,
    ConfigError,
    DatabaseUnavailable,
    DeadLetterNotFound,
    InvalidBreaker,
    InvalidJobOptions,
    InvalidJobState,
    InvalidLimit,
    InvalidPayload,
    InvalidQueueName,
    InvalidRetention,
    InvalidRetryPolicy,
    InvalidSchedule,
    JobNotFound,
    LimitNotFound,
    PermissionDenied,
    PgjobsError,
    QueryTimeout,
    ReadOnlyDatabase,
    ScheduleExists,
    ScheduleNotFound,
    SchemaError,
    TaskNotFound,
)
from pgjobs.failures import breakers, dead_letters, retries
from pgjobs.failures.breakers import Breaker, BreakerOpen
from pgjobs.failures.dead_letters import DeadLetter
from pgjobs.failures.retries import FailNow, RetryIn, RetryPolicy
from pgjobs.failures.stalled import WorkerLost
from pgjobs.failures.timeouts import JobTimeout, deadline_passed
from pgjobs.monitoring import events, metrics
from pgjobs.settings import Settings, load_settings
from pgjobs.worker.interruptions import WorkerShutdown
from pgjobs.worker.progress import report_progress, report_progress_async

# ``import pgjobs.schedules`` and ``from pgjobs.schema import upgrade`` keep
# working for code written against the short names.
for _name, _module in {
    "breakers": breakers,
    "database": database,
    "dead_letters": dead_letters,
    "events": events,
    "jobs": jobs,
    "limits": limits,
    "metrics": metrics,
    "queues": queues,
    "retention": retention,
    "retries": retries,
    "schedules": schedules,
    "schema": schema,
}.items():
    sys.modules.setdefault(f"{__name__}.{_name}", _module)
del _name, _module

__all__ = [
    "AlreadyEnqueued",
    "App",
    "AppNotFound",
    "Breaker",
    "BreakerNotFound",
    "BreakerOpen",
    "ConfigError",
    "DatabaseUnavailable",
    "DeadLetter",
    "DeadLetterNotFound",
    "FailNow",
    "InvalidBreaker",
    "InvalidJobOptions",
    "InvalidJobState",
    "InvalidLimit",
    "InvalidPayload",
    "InvalidQueueName",
    "InvalidRetention",
    "InvalidRetryPolicy",
    "InvalidSchedule",
    "JobNotFound",
    "JobStatus",
    "JobTimeout",
    "LimitNotFound",
    "PermissionDenied",
    "PgjobsError",
    "QueryTimeout",
    "ReadOnlyDatabase",
    "RetryIn",
    "RetryPolicy",
    "ScheduleExists",
    "ScheduleNotFound",
    "SchemaError",
    "Settings",
    "TaskNotFound",
    "WorkerLost",
    "WorkerShutdown",
    "deadline_passed",
    "get_job",
    "load_settings",
    "report_progress",
    "report_progress_async",
]
