"""Dead letters: jobs that failed for good, in the plain table ``pgjobs.dead_letters``.

A letter is written by a trigger in the same statement that marks its job
'failed' (see ``sql/schema/11_dead_letters.sql``), so a failed job without a
letter, or a letter for a job that did not fail, cannot exist. The worker that
failed the job then calls the App's ``on_dead_letter`` hook with it.

Replaying re-enqueues letters as new jobs (through ``pgjobs.defer_jobs``) and
marks them replayed, in one statement: a letter is never replayed twice.
"""

from __future__ import annotations

import builtins
import datetime
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from procrastinate import connector as procrastinate_connector

from pgjobs.db import connections, queries
from pgjobs.db.connections import Target
from pgjobs.errors import DeadLetterNotFound, InvalidJobOptions

if TYPE_CHECKING:
    pass

logger = logging.getLogger("pgjobs.dead_letters")


@dataclass(frozen=True)
class DeadLetter:
    """One row of ``pgjobs.dead_letters``."""

    id: int
    job_id: int
    task_name: str
    queue_name: str
    priority: int
    lock: str | None
    args: dict[str, Any]
    attempts: int
    error_type: str
    error_message: str
    traceback: str | None
    first_failed_at: datetime.datetime
    last_failed_at: datetime.datetime
    created_at: datetime.datetime
    replayed_at: datetime.datetime | None
    replay_job_id: int | None


@dataclass(frozen=True)
class Replayed:
    letter_id: int
    job_id: int
    task_name: str
    queue_name: str


#: Signature of ``App(on_dead_letter=...)``.
DeadLetterHook = Callable[[DeadLetter], None]


def log_dead_letter(letter: DeadLetter) -> None:
    """The default alert hook: one WARNING line per new letter."""
    logger.warning(
        f"job {letter.job_id} ({letter.task_name}) is dead after "
        f"{letter.attempts} attempt(s): {letter.error_type}: "
        f"{letter.error_message[:200]} (dead letter {letter.id})",
        extra={
            "action": "dead_letter",
            "dead_letter_id": letter.id,
            "job_id": letter.job_id,
            "task_name": letter.task_name,
            "queue_name": letter.queue_name,
            "error_type": letter.error_type,
        },
    )


async def alert(
    connector: procrastinate_connector.BaseConnector,
    hook: DeadLetterHook | None,
    letter_id: int,
) -> None:
    """Call ``hook`` (default: log) for a letter this worker just produced.

    A failing hook is logged and never breaks the worker: the letter is
    already committed.
    """
    try:
        row = await connector.execute_query_one_async(
            query=queries.query("dead_letters_get"), id=letter_id
        )
        (hook or log_dead_letter)(DeadLetter(**row))
    except Exception:
        logger.exception(
            f"on_dead_letter hook failed for dead letter {letter_id}",
            extra={"action": "dead_letter_hook_error", "dead_letter_id": letter_id},
        )


def _window(
    since: datetime.datetime | datetime.timedelta | None,
    until: datetime.datetime | None,
) -> dict[str, datetime.datetime | None]:
    if isinstance(since, datetime.timedelta):
        since = datetime.datetime.now(datetime.UTC) - since
    for value in (since, until):
        if value is not None and value.tzinfo is None:
            raise InvalidJobOptions("since/until must be timezone-aware datetimes")
    return {"since": since, "until": until}


def list_dead_letters(
    target: Target,
    *,
    task: str | None = None,
    queue: str | None = None,
    error_type: str | None = None,
    since: datetime.datetime | datetime.timedelta | None = None,
    until: datetime.datetime | None = None,
    replayed: bool | None = None,
    limit: int | None = 100,
) -> list[DeadLetter]:
    """Letters, newest first. ``replayed``: None all, False pending, True done.

    ``since``/``until`` filter on ``last_failed_at``; ``since`` may be a
    timedelta ("the last hour").
    """
    with connections.connection(target) as conn:
        rows = queries.fetch_all(
            conn,
            "dead_letters_list",
            task=task,
            queue=queue,
            error_type=error_type,
            replayed=replayed,
            limit=limit,
            **_window(since, until),
        )
    return [DeadLetter(**row) for row in rows]


def get_dead_letter(target: Target, letter_id: int) -> DeadLetter:
    with connections.connection(target) as conn:
        row = queries.fetch_one(conn, "dead_letters_get", id=letter_id)
    if row is None:
        raise DeadLetterNotFound(f"no dead letter with id {letter_id}")
    return DeadLetter(**row)


def replay_dead_letters(
    target: Target,
    *,
    ids: Sequence[int] | None = None,
    task: str | None = None,
    queue: str | None = None,
    error_type: str | None = None,
    since: datetime.datetime | datetime.timedelta | None = None,
    until: datetime.datetime | None = None,
    all: bool = False,
    limit: int | None = None,
) -> list[Replayed]:
    """Enqueue each matching letter not yet replayed as a new job.

    Give letter ``ids``, filters, or ``all=True``; at least one. Returns the
    new job per letter. Replaying the same letters again enqueues nothing.
    """
    filters = (ids, task, queue, error_type, since, until)
    if not all and builtins.all(value is None for value in filters):
        raise InvalidJobOptions(
            "say which dead letters to replay: ids, a filter, or all=True"
        )
    with connections.connection(target) as conn:
        rows = queries.fetch_all(
            conn,
            "dead_letters_replay",
            ids=list(ids) if ids is not None else None,
            task=task,
            queue=queue,
            error_type=error_type,
            limit=limit,
            **_window(since, until),
        )
    return [Replayed(**row) for row in rows]


def replay_dead_letter(target: Target, letter_id: int) -> Replayed:
    """Replay one letter (``DeadLetterNotFound``/``InvalidJobOptions`` if not)."""
    with connections.connection(target) as conn:
        replayed = replay_dead_letters(conn, ids=[letter_id])
        if replayed:
            return replayed[0]
        letter = get_dead_letter(conn, letter_id)
    raise InvalidJobOptions(
        f"dead letter {letter_id} was already replayed as job {letter.replay_job_id}"
    )


def purge_dead_letters(
    target: Target,
    older_than: datetime.timedelta,
    *,
    replayed_only: bool = False,
) -> int:
    """Delete letters created more than ``older_than`` ago; returns how many."""
    if older_than < datetime.timedelta(0):
        raise InvalidJobOptions("older_than must not be negative")
    with connections.connection(target) as conn:
        rows = queries.fetch_all(
            conn,
            "dead_letters_purge",
            older_than=older_than,
            replayed_only=replayed_only,
        )
    return len(rows)
