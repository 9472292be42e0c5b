"""Worker middleware that applies to some tasks only.

A worker middleware wraps every job the worker runs. pgjobs' own (breakers,
timeouts) do nothing for a task declared without their option; declared
with ``for_tasks``, the worker leaves such a middleware out of the chain of
the tasks it does not apply to (decided once per task, see
``pgjobs.worker.worker``) instead of calling it for every job.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

_M = TypeVar("_M", bound=Callable[..., Any])

#: The attribute ``for_tasks`` sets on a middleware: kept on the function,
#: so a middleware made per App goes away with it.
_PREDICATE = "pgjobs_applies_to"


def for_tasks(predicate: Callable[[Any], bool]) -> Callable[[_M], _M]:
    """Declare that a worker middleware only acts on tasks matching
    ``predicate`` (given the task object) and passes every other job through."""

    def register(middleware: _M) -> _M:
        setattr(middleware, _PREDICATE, predicate)
        return middleware

    return register


def applies(middleware: Callable[..., Any], task: Any) -> bool:
    """Whether ``middleware`` must wrap the jobs of ``task``."""
    predicate: Callable[[Any], bool] | None = getattr(middleware, _PREDICATE, None)
    return predicate is None or predicate(task)
