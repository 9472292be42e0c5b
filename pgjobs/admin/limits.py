"""Limits admin API: list, set and reset concurrency and rate limits.

Limits are declared in code (``@app.task(concurrency_limit=..., rate_limit=...)``,
see ``pgjobs.worker.limits``) and stored by every worker at its start; a
runtime value set here wins over the declared one until it is reset. Running
workers see a change at their next claim, and idle ones are woken.

Every function takes settings, a database URL, or a psycopg connection (then
it runs in the caller's transaction and the caller commits).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from pgjobs.db import connections, queries
from pgjobs.db.connections import Target
from pgjobs.errors import InvalidLimit, LimitNotFound
from pgjobs.worker import limits
from pgjobs.worker.limits import Kind, Rate, Scope


@dataclass(frozen=True)
class LimitState:
    """One line of ``list_limits``: a limit as declared, as set, in force."""

    task_name: str
    scope: Scope
    kind: Kind
    #: scope 'key': the task argument whose value is the key.
    key_arg: str | None
    #: "5" (concurrency) or "10/s" (rate); None: not declared / not set.
    declared: str | None
    runtime: str | None
    #: What the claim enforces: the runtime value when set, else the declared.
    effective: str | None
    updated_at: datetime.datetime
    updated_by: str
    #: Now: jobs running (concurrency) or starts in the current window
    #: (rate), the whole task's (scope 'key': all keys together)...
    used: int
    #: ...and the busiest key's (scope 'key').
    busiest: int
    #: The task's waiting jobs (held back or not).
    waiting: int


@dataclass(frozen=True)
class LimitChange:
    """What ``set_limit`` / ``reset_limit`` did."""

    task_name: str
    scope: Scope
    kind: Kind
    #: The new runtime value (None after a reset).
    runtime: str | None
    #: False: a reset of a limit that had no runtime value.
    changed: bool


def _value(kind: str, amount: int | None, period_s: float | None) -> str | None:
    if amount is None:
        return None
    if kind == "concurrency" or period_s is None:
        return str(amount)
    return str(Rate(amount, period_s))


def list_limits(target: Target, task_name: str | None = None) -> list[LimitState]:
    """Every limit declared or set (or ``task_name``'s), by task."""
    with connections.connection(target) as conn:
        rows = queries.fetch_all(conn, "limits_list", task_name=task_name)
    found = []
    for row in rows:
        declared = _value(row["kind"], row["declared_amount"], row["declared_period_s"])
        runtime = _value(row["kind"], row["runtime_amount"], row["runtime_period_s"])
        found.append(
            LimitState(
                task_name=row["task_name"],
                scope=row["scope"],
                kind=row["kind"],
                key_arg=row["key_arg"],
                declared=declared,
                runtime=runtime,
                effective=runtime if runtime is not None else declared,
                updated_at=row["updated_at"],
                updated_by=row["updated_by"],
                used=row["used"],
                busiest=row["busiest"],
                waiting=row["waiting"],
            )
        )
    return found


def _check_task_name(task_name: str) -> None:
    if not isinstance(task_name, str) or not 1 <= len(task_name) <= 128:
        raise InvalidLimit(
            f"task name must be 1 to 128 characters, got {task_name!r:.60}"
        )
    if "\x00" in task_name:
        raise InvalidLimit("task name may not contain NUL (\\x00) characters")


def set_limit(
    target: Target,
    task_name: str,
    *,
    concurrency: int | None = None,
    rate: str | Rate | None = None,
    per_key: str | None = None,
    updated_by: str | None = None,
) -> list[LimitChange]:
    """Set the runtime value of ``task_name``'s concurrency and/or rate limit
    (``rate``: "10/s", "100/m", "5/min", "1/h"), task-wide, or per key of
    argument ``per_key``. It wins over the declared value until reset."""
    _check_task_name(task_name)
    if concurrency is None and rate is None:
        raise InvalidLimit("give a concurrency limit, a rate limit or both")
    wanted: list[tuple[Kind, int, float | None]] = []
    if concurrency is not None:
        wanted.append(("concurrency", limits.check_amount(concurrency), None))
    if rate is not None:
        parsed = limits.parse_rate(rate)
        wanted.append(("rate", parsed.amount, parsed.period_s))
    scope: Scope = "task" if per_key is None else "key"
    key_arg = None if per_key is None else limits.check_key_arg(per_key)
    if updated_by is not None and "\x00" in updated_by:
        raise InvalidLimit("updated_by may not contain NUL (\\x00) characters")
    changes = []
    with connections.connection(target) as conn:
        if key_arg is not None:
            declared_key = queries.fetch_value(
                conn, "limits_declared_key", task_name=task_name
            )
            if declared_key is not None and declared_key != key_arg:
                raise InvalidLimit(
                    f"task {task_name!r} is limited per {declared_key!r},"
                    f" not per {key_arg!r}"
                )
        for kind, amount, period_s in wanted:
            queries.fetch_value(
                conn,
                "limits_set",
                task_name=task_name,
                scope=scope,
                kind=kind,
                key_arg=key_arg,
                amount=amount,
                period_s=period_s,
                updated_by=updated_by,
            )
            changes.append(
                LimitChange(
                    task_name, scope, kind, _value(kind, amount, period_s), changed=True
                )
            )
    return changes


def reset_limit(
    target: Target,
    task_name: str,
    *,
    kind: Kind | None = None,
    per_key: bool | None = None,
) -> list[LimitChange]:
    """Drop the runtime values of ``task_name``'s limits (only ``kind``'s;
    only the per-key ones with ``per_key`` True, the task-wide with False):
    the declared values apply again. LimitNotFound: the task has no limit."""
    _check_task_name(task_name)
    if kind is not None and kind not in ("concurrency", "rate"):
        raise InvalidLimit(f"kind must be 'concurrency' or 'rate', got {kind!r:.60}")
    scopes: list[Scope] = (
        ["task", "key"] if per_key is None else (["key"] if per_key else ["task"])
    )
    kinds: list[Kind] = ["concurrency", "rate"] if kind is None else [kind]
    changes = []
    with connections.connection(target) as conn:
        existing = queries.fetch_all(conn, "limits_list", task_name=task_name)
        if not existing:
            raise LimitNotFound(f"task {task_name!r} has no limit declared or set")
        for row in existing:
            if row["scope"] not in scopes or row["kind"] not in kinds:
                continue
            changed = queries.fetch_value(
                conn,
                "limits_set",
                task_name=task_name,
                scope=row["scope"],
                kind=row["kind"],
                key_arg=None,
                amount=None,
                period_s=None,
                updated_by=None,
            )
            changes.append(
                LimitChange(task_name, row["scope"], row["kind"], None, bool(changed))
            )
    return changes
