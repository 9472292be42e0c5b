"""pgjobs' procrastinate ``Worker`` subclass.

procrastinate builds its worker in ``App._worker``; pgjobs' App returns this
class there, so ``procrastinate --app=... worker`` and ``pgjobs worker`` run
the same code. Features plug in through the App, not by editing this file:

- ``app.worker_side_tasks``: coroutine factories started with the worker's
  own side tasks (heartbeat, listener...) and cancelled at shutdown;
- ``app.task_middleware_defaults`` / ``app.worker_middleware_defaults``:
  middleware every worker of this app uses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from procrastinate import worker as procrastinate_worker

SideTask = Callable[["Worker"], Awaitable[None]]


class Worker(procrastinate_worker.Worker):
    def __init__(
        self, *, side_tasks: list[SideTask] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.extra_side_tasks = list(side_tasks or [])

    def _start_side_tasks(self) -> list[asyncio.Task[Any]]:
        tasks: list[asyncio.Task[Any]] = super()._start_side_tasks()
        for factory in self.extra_side_tasks:
            name = getattr(factory, "__name__", "pgjobs_side_task")
            tasks.append(asyncio.create_task(factory(self), name=name))  # type: ignore[arg-type]
        return tasks
