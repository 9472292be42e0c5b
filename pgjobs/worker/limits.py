"""Fleet-wide concurrency and rate limits: declaring, parsing, syncing.

Declared on the task (README: Concurrency and rate limits)::

    @app.task(
        rate_limit="10/s",           # at most 10 starts in any 1 s window
        concurrency_limit=20,        # at most 20 running at once
        limit_key="tenant_id",       # the argument whose value is the key
        key_concurrency_limit=5,     # at most 5 running per tenant
        key_rate_limit="100/m",      # at most 100 starts per minute per tenant
    )
    def call_api(tenant_id: str, ...): ...

Every limit holds across all workers and hosts: the claim
(``pgjobs.fetch_jobs``) enforces them in SQL. Each worker stores the limits
its App declares at its start (``sync_declared``); a runtime value set with
``pgjobs limits set`` (``pgjobs.admin.limits``) wins over the declared one.
"""

from __future__ import annotations

import inspect
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from pgjobs.db import queries
from pgjobs.errors import InvalidLimit

Scope = Literal["task", "key"]
Kind = Literal["concurrency", "rate"]

#: Rate units and their length in seconds ("10/s", "100/m", "5/min", "1/h").
UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$")
#: Largest amount a limit may have (the column is a PostgreSQL integer).
MAX_AMOUNT = 2**31 - 1


@dataclass(frozen=True)
class Rate:
    """At most ``amount`` starts in any window of ``period_s`` seconds."""

    amount: int
    period_s: float

    def __str__(self) -> str:
        return f"{self.amount}/{format_period(self.period_s)}"


@dataclass(frozen=True)
class Limit:
    """One limit of one task, as stored in ``pgjobs.task_limits``."""

    task_name: str
    scope: Scope
    kind: Kind
    amount: int
    #: Rate limits: the window's length.
    period_s: float | None = None
    #: scope 'key': the task argument whose value is the key.
    key_arg: str | None = None


def format_period(seconds: float) -> str:
    """``1`` -> ``s``, ``60`` -> ``m``, ``3600`` -> ``h``, ``2`` -> ``2s``."""
    for length, unit in ((3600.0, "h"), (60.0, "m"), (1.0, "s")):
        if seconds >= length and seconds % length == 0:
            count = int(seconds // length)
            return unit if count == 1 else f"{count}{unit}"
    return f"{seconds:g}s"


def parse_rate(value: object, *, what: str = "rate limit") -> Rate:
    """``"10/s"``, ``"100/m"``, ``"5/min"``, ``"1/h"``, ``"3/10s"`` -> Rate."""
    if isinstance(value, Rate):
        return value
    match = _RATE.match(value) if isinstance(value, str) else None
    if match is None:
        raise InvalidLimit(
            f"{what} must look like '10/s', '100/m', '5/min' or '1/h',"
            f" got {value!r:.60}"
        )
    amount_text, count_text, unit = match.groups()
    if unit not in UNITS:
        raise InvalidLimit(
            f"{what}: unknown unit {unit!r} in {value!r:.60}"
            f" (one of {', '.join(UNITS)})"
        )
    amount = check_amount(int(amount_text), what=what)
    count = float(count_text) if count_text else 1.0
    period = count * UNITS[unit]
    if not math.isfinite(period) or period <= 0:
        raise InvalidLimit(
            f"{what}: the window must be longer than 0, got {value!r:.60}"
        )
    return Rate(amount, period)


def check_amount(value: object, *, what: str = "concurrency limit") -> int:
    """A positive whole number (bool refused: ``True`` is no limit)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidLimit(f"{what} must be a whole number, got {value!r:.60}")
    if value <= 0:
        raise InvalidLimit(f"{what} must be at least 1, got {value}")
    if value > MAX_AMOUNT:
        raise InvalidLimit(f"{what} must be at most {MAX_AMOUNT}, got {value}")
    return value


def declare(
    task_name: str,
    func: Callable[..., Any],
    *,
    concurrency_limit: object = None,
    rate_limit: object = None,
    limit_key: object = None,
    key_concurrency_limit: object = None,
    key_rate_limit: object = None,
) -> tuple[Limit, ...]:
    """The limits a task declares (its decorator's options), checked."""
    where = f"task {task_name!r}"
    limits: list[Limit] = []
    if concurrency_limit is not None:
        amount = check_amount(concurrency_limit, what=f"{where}: concurrency_limit")
        limits.append(Limit(task_name, "task", "concurrency", amount))
    if rate_limit is not None:
        rate = parse_rate(rate_limit, what=f"{where}: rate_limit")
        limits.append(Limit(task_name, "task", "rate", rate.amount, rate.period_s))
    per_key = key_concurrency_limit is not None or key_rate_limit is not None
    if limit_key is None:
        if per_key:
            raise InvalidLimit(
                f"{where}: key_concurrency_limit and key_rate_limit need limit_key"
                " (the argument whose value is the key)"
            )
        return tuple(limits)
    key_arg = check_key_arg(limit_key, what=f"{where}: limit_key")
    if not per_key:
        raise InvalidLimit(
            f"{where}: limit_key needs key_concurrency_limit or key_rate_limit"
        )
    parameters = inspect.signature(func).parameters
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    if key_arg not in parameters and not accepts_any:
        raise InvalidLimit(
            f"{where}: limit_key {key_arg!r} is not one of its arguments"
            f" ({', '.join(parameters) or 'none'})"
        )
    if key_concurrency_limit is not None:
        amount = check_amount(
            key_concurrency_limit, what=f"{where}: key_concurrency_limit"
        )
        limits.append(Limit(task_name, "key", "concurrency", amount, key_arg=key_arg))
    if key_rate_limit is not None:
        rate = parse_rate(key_rate_limit, what=f"{where}: key_rate_limit")
        limits.append(
            Limit(task_name, "key", "rate", rate.amount, rate.period_s, key_arg=key_arg)
        )
    return tuple(limits)


def check_key_arg(value: object, *, what: str = "limit key") -> str:
    """The name of the argument whose value is a job's key."""
    if not isinstance(value, str) or not value.isidentifier():
        raise InvalidLimit(f"{what} must be an argument name, got {value!r:.60}")
    if len(value) > 128:
        raise InvalidLimit(f"{what} must be at most 128 characters")
    return value


def declared_by(tasks: Iterable[Any]) -> tuple[list[str], list[Limit]]:
    """The names of ``tasks`` and the limits they declare (tasks without a
    ``limits`` attribute, e.g. procrastinate's own, declare none)."""
    names: list[str] = []
    limits: list[Limit] = []
    for task in tasks:
        names.append(task.name)
        limits += getattr(task, "limits", ())
    return names, limits


def sync_params(tasks: Iterable[Any]) -> dict[str, Any]:
    """The parameters of the ``limits_sync`` query for these tasks."""
    names, limits = declared_by(tasks)
    return {
        "tasks": names,
        "limits": json.dumps(
            [
                {
                    "task_name": limit.task_name,
                    "scope": limit.scope,
                    "kind": limit.kind,
                    "key_arg": limit.key_arg,
                    "amount": limit.amount,
                    "period_s": limit.period_s,
                }
                for limit in limits
            ]
        ),
    }


async def sync_declared(connector: Any, tasks: Iterable[Any]) -> bool:
    """Store what the tasks declare; True when any limit is in force (then
    the worker watches rate-limited jobs: ``pgjobs.worker.limit_waits``)."""
    await connector.execute_query_async(
        query=queries.query("limits_sync"), **sync_params(tasks)
    )
    row = await connector.execute_query_one_async(query=queries.query("limits_any"))
    return bool(row["any"])
