"""pgjobs tasks: procrastinate tasks whose arguments are typed and validated."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from procrastinate import tasks as procrastinate_tasks

from pgjobs.payloads import PayloadSchema


class Task(procrastinate_tasks.Task):  # type: ignore[type-arg]
    """A procrastinate ``Task`` with a payload schema from its type hints."""

    def __init__(self, func: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(func, **kwargs)
        self.payload = PayloadSchema(
            func, task_name=self.name, skip_first=self.pass_context
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # The worker calls the task with the stored JSON: hand the function
        # validated values (pydantic models, datetimes...) instead.
        return self.func(*args, **self.payload.load(kwargs))
