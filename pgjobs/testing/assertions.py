"""What was enqueued: ``enqueued_jobs`` and ``assert_enqueued``.

Both read ``procrastinate_jobs`` on the database the test uses. Given a
connection (psycopg, SQLAlchemy, Django), they read inside its transaction,
so a job enqueued and not yet committed is seen; given a URL or Settings,
they see committed jobs only.
"""

from __future__ import annotations

import datetime
import json
import pprint
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import procrastinate.tasks
import psycopg
import pydantic_core

from pgjobs.db import connections, queries
from pgjobs.enqueueing.enqueue import psycopg_connection
from pgjobs.settings import Settings

TaskRef = procrastinate.tasks.Task[Any, Any, Any] | str
Target = Settings | str | Any


@dataclass(frozen=True)
class EnqueuedJob:
    """One job row as a test sees it."""

    id: int
    task_name: str
    queue_name: str
    args: dict[str, Any]
    status: str
    priority: int
    lock: str | None
    queueing_lock: str | None
    scheduled_at: datetime.datetime | None
    attempts: int


@contextmanager
def reading(target: Target) -> Iterator[psycopg.Connection[Any]]:
    """A psycopg connection on ``target``: the caller's own, or a new one."""
    if isinstance(target, Settings | str):
        with connections.connection(target) as conn:
            yield conn
        return
    yield psycopg_connection(target)


def task_name(task: TaskRef) -> str:
    return task if isinstance(task, str) else task.name


def enqueued_jobs(
    target: Target,
    task: TaskRef | None = None,
    *,
    queue: str | None = None,
    status: str | None = "todo",
) -> list[EnqueuedJob]:
    """Jobs in id order, of ``task`` (object or name) and ``queue`` if given.

    ``status``: 'todo' (default: waiting, including delayed jobs), another
    procrastinate status, or ``None`` for every job.
    """
    with reading(target) as conn:
        rows = queries.fetch_all(
            conn,
            "testing_enqueued_jobs",
            task=None if task is None else task_name(task),
            queue=queue,
            status=status,
        )
    for row in rows:
        if isinstance(row["args"], str):  # Django's connections load jsonb as text
            row["args"] = json.loads(row["args"])
    return [EnqueuedJob(**row) for row in rows]


def as_json(value: Any) -> Any:
    """``value`` as it reads back from a job's stored arguments."""
    return json.loads(pydantic_core.to_json(value))


def _mismatches(job: EnqueuedJob, expected: dict[str, Any]) -> list[str]:
    lines = []
    for key, value in expected.items():
        if key not in job.args:
            lines.append(f"{key}: expected {value!r}, missing")
        elif job.args[key] != value:
            lines.append(f"{key}: expected {value!r}, got {job.args[key]!r}")
    return lines


def assert_enqueued(
    target: Target,
    task: TaskRef,
    /,
    **expected_args: Any,
) -> EnqueuedJob:
    """The waiting job of ``task`` whose arguments include ``expected_args``.

    Only the arguments given are compared (after JSON encoding, so a model
    or a datetime compares with what was stored). Raises ``AssertionError``
    listing the jobs of that task that were enqueued, and how each differs.
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not this one
    name = task_name(task)
    expected = {key: as_json(value) for key, value in expected_args.items()}
    jobs = enqueued_jobs(target, name)
    for job in jobs:
        if not _mismatches(job, expected):
            return job
    wanted = f" with {pprint.pformat(expected, sort_dicts=True)}" if expected else ""
    lines = [f"no waiting job of task {name!r}{wanted}"]
    if jobs:
        lines.append(f"waiting jobs of {name!r} ({len(jobs)}):")
        for job in jobs:
            lines.append(f"  job {job.id}: {pprint.pformat(job.args, sort_dicts=True)}")
            lines.extend(f"    {line}" for line in _mismatches(job, expected))
    else:
        others = enqueued_jobs(target)
        counts: dict[str, int] = {}
        for job in others:
            counts[job.task_name] = counts.get(job.task_name, 0) + 1
        if counts:
            listed = ", ".join(f"{t} ({n})" for t, n in sorted(counts.items()))
            lines.append(f"waiting jobs of other tasks: {listed}")
        else:
            lines.append("no job is waiting at all")
    raise AssertionError("\n".join(lines))


def assert_not_enqueued(target: Target, task: TaskRef, /, **expected_args: Any) -> None:
    """No waiting job of ``task`` has arguments including ``expected_args``."""
    __tracebackhide__ = True
    name = task_name(task)
    expected = {key: as_json(value) for key, value in expected_args.items()}
    found = [
        job for job in enqueued_jobs(target, name) if not _mismatches(job, expected)
    ]
    if found:
        listed = "\n".join(
            f"  job {job.id}: {pprint.pformat(job.args, sort_dicts=True)}"
            for job in found
        )
        raise AssertionError(f"unexpected waiting job(s) of {name!r}:\n{listed}")
