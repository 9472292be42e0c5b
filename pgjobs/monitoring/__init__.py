"""Monitoring: what is happening, read from the SQL views and the job events.

``views`` (the ``pgjobs.*`` monitoring views as typed results, also importable
from ``pgjobs.monitoring`` itself), ``metrics`` (Prometheus), ``events`` (the
live event stream), ``logs`` (log set-up) and ``tracing`` (OpenTelemetry).
"""

from pgjobs.monitoring.views import (
    BreakerSummary,
    MonitoringOptions,
    Problem,
    QueueStats,
    Snapshot,
    StalledJob,
    TaskStats,
    WorkerStatus,
    health,
    queue_stats,
    reading,
    snapshot,
    stalled_jobs,
    task_stats,
    workers,
)

__all__ = [
    "BreakerSummary",
    "MonitoringOptions",
    "Problem",
    "QueueStats",
    "Snapshot",
    "StalledJob",
    "TaskStats",
    "WorkerStatus",
    "health",
    "queue_stats",
    "reading",
    "snapshot",
    "stalled_jobs",
    "task_stats",
    "workers",
]
