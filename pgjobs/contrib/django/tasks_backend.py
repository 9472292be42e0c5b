"""A Django 6 ``django.tasks`` backend that stores tasks as pgjobs jobs.

    TASKS = {
        "default": {"BACKEND": "pgjobs.contrib.django.tasks_backend.PgjobsBackend"}
    }

``my_task.enqueue(...)`` inserts a job on Django's connection: inside
``transaction.atomic()`` it commits or rolls back with the block. pgjobs
workers (``manage.py pgjobs worker``) run it through one pgjobs task,
``pgjobs.django_task``, with pgjobs' retries, timeouts and dead letters
(the App's defaults). ``get_result(id)`` reads the job's state; return
values are not stored (pass ids, keep results in your own tables).
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.base import (
    Task,
    TaskContext,
    TaskError,
    TaskResult,
    TaskResultStatus,
)
from django.tasks.exceptions import TaskResultDoesNotExist
from django.tasks.signals import task_enqueued
from django.utils import timezone
from django.utils.module_loading import import_string

from pgjobs.admin.jobs import JobStatus, get_job
from pgjobs.app import App
from pgjobs.errors import JobNotFound

#: The pgjobs task every Django task runs through.
RUNNER = "pgjobs.django_task"

_STATUSES = {
    "todo": TaskResultStatus.READY,
    "doing": TaskResultStatus.RUNNING,
    "succeeded": TaskResultStatus.SUCCESSFUL,
    "failed": TaskResultStatus.FAILED,
    "cancelled": TaskResultStatus.FAILED,
    "aborted": TaskResultStatus.FAILED,
}


def run_django_task(
    context: Any, task_path: str, args: list[Any], kwargs: dict[str, Any]
) -> None:
    """Run the Django task at ``task_path`` (in a pgjobs worker)."""
    task: Task = import_string(task_path)
    if task.takes_context:
        job = context.job
        result = _result(task, str(job.id), TaskResultStatus.RUNNING, args, kwargs)
        result.worker_ids.extend(["pgjobs"] * (job.attempts + 1))
        task.call(TaskContext(task_result=result), *args, **kwargs)
    else:
        task.call(*args, **kwargs)


def register(app: App) -> None:
    """Declare the runner task on ``app`` (done by the Django app at start)."""
    if RUNNER not in app.tasks:
        app.task(name=RUNNER, pass_context=True)(run_django_task)


def _result(
    task: Task,
    result_id: str,
    status: TaskResultStatus,
    args: list[Any],
    kwargs: dict[str, Any],
    *,
    backend: str = "default",
    job: JobStatus | None = None,
) -> TaskResult:
    return TaskResult(
        task=task,
        id=result_id,
        status=status,
        enqueued_at=job.created_at if job else timezone.now(),
        started_at=job.started_at if job else None,
        finished_at=job.finished_at if job else None,
        last_attempted_at=job.started_at if job else None,
        args=args,
        kwargs=kwargs,
        backend=backend,
        errors=[
            TaskError(
                exception_class_path=error.error_type, traceback=error.traceback or ""
            )
            for error in (job.errors if job else [])
        ],
        worker_ids=[str(job.worker_id or "pgjobs")] * job.attempts if job else [],
    )


class PgjobsBackend(BaseTaskBackend):  # type: ignore[misc]
    """``OPTIONS``: ``DATABASE`` (Django alias, default ``default``)."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.database = self.options.get("DATABASE", DEFAULT_DB_ALIAS)

    def _app(self) -> App:
        from pgjobs.contrib.django.jobs import get_app

        app = get_app()
        register(app)
        return app

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        self.validate_task(task)
        run_at: datetime.datetime | None = task.run_after
        job_id = self._app().enqueue(
            connections[self.database],
            RUNNER,
            {"task_path": task.module_path, "args": list(args), "kwargs": dict(kwargs)},
            queue=task.queue_name,
            priority=task.priority,
            run_at=run_at,
        )
        result = _result(
            task,
            str(job_id),
            TaskResultStatus.READY,
            list(args),
            dict(kwargs),
            backend=self.alias,
        )
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> TaskResult:
        try:
            job = get_job(_psycopg(self.database), int(result_id))
        except (JobNotFound, ValueError):
            raise TaskResultDoesNotExist(result_id) from None
        if job.task_name != RUNNER:
            raise TaskResultDoesNotExist(result_id)
        # Django loads jsonb as text on its connections (its JSONField decodes).
        payload = json.loads(job.args) if isinstance(job.args, str) else job.args
        task = import_string(payload["task_path"])
        return _result(
            task,
            result_id,
            _STATUSES[job.status],
            payload["args"],
            payload["kwargs"],
            backend=self.alias,
            job=job,
        )


def _psycopg(alias: str) -> Any:
    from pgjobs.contrib.django.connection import psycopg_connection_of

    return psycopg_connection_of(connections[alias])
