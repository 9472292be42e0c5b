"""Progress (0-100) a running task reports, shown by ``get_job``/``jobs show``.

Declare the task with ``pass_context=True`` and call
``pgjobs.report_progress(context, 42)`` (sync tasks) or
``await pgjobs.report_progress_async(context, 42)`` (async tasks). Each call
is one upsert into ``pgjobs.job_progress``; report at a human pace (every few
percent or seconds), not per item.
"""

from __future__ import annotations

from typing import Any

from procrastinate import job_context

from pgjobs.db import queries
from pgjobs.errors import InvalidJobOptions


def _params(
    context: job_context.JobContext, percent: float, message: str | None
) -> dict[str, Any]:
    if not 0 <= percent <= 100:
        raise InvalidJobOptions(f"progress must be between 0 and 100, got {percent}")
    return {"job_id": context.job.id, "progress": round(percent), "message": message}


def report_progress(
    context: job_context.JobContext, percent: float, message: str | None = None
) -> None:
    """Store the job's progress (from a sync task)."""
    context.app.connector.get_sync_connector().execute_query(
        query=queries.query("progress_set"),
        **_params(context, percent, message),
    )


async def report_progress_async(
    context: job_context.JobContext, percent: float, message: str | None = None
) -> None:
    """Store the job's progress (from an async task)."""
    await context.app.connector.execute_query_async(
        query=queries.query("progress_set"),
        **_params(context, percent, message),
    )
