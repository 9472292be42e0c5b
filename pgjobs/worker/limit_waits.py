"""Waking the worker when a rate-limited job may start, instead of polling.

Every worker stores the limits its App's tasks declare before its first
claim (``sync_step``: ``pgjobs.worker.limits.sync_declared``). Then a side
task, each time a claim leaves the worker idle (``Worker.on_idle``) while
limits are in force, asks the database when the earliest job held back by a
rate limit may start (``pgjobs.limits_next_start``: one cheap query per idle
spell) and wakes the worker then, as an enqueue's notification would. Jobs
held back by a concurrency limit need no timer: a slot frees when an outcome
is written, and the worker that wrote it claims again (``on_stored``).

Without any limit in force the side task only checks again, every
``RECHECK_S``, whether one was set at runtime since.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from procrastinate import connector as procrastinate_connector

from pgjobs.db import queries
from pgjobs.worker import limits

#: How often a worker with no limit in force checks whether one was set.
RECHECK_S = 30.0
#: Added to the computed wake-up: the window has surely moved on by then.
MARGIN_S = 0.002


class LimitsHost(Protocol):
    """What the side task needs of its App."""

    @property
    def connector(self) -> procrastinate_connector.BaseConnector: ...

    @property
    def tasks(self) -> dict[str, Any]: ...


class Wakeable(Protocol):
    """The worker the side task runs beside."""

    on_idle: list[Callable[[], None]]

    def wake(self) -> None: ...


async def next_start_delay(connector: Any) -> float | None:
    """Seconds until a job held back by a rate limit may start (None: none)."""
    row = await connector.execute_query_one_async(
        query=queries.query("limits_next_start")
    )
    delay = row["delay_s"]
    return None if delay is None else max(0.0, float(delay))


def sync_step(host: LimitsHost) -> Callable[[], Awaitable[bool]]:
    """The worker's start-up step storing the declared limits."""

    async def sync() -> bool:
        return await limits.sync_declared(host.connector, host.tasks.values())

    return sync


def waker(host: LimitsHost) -> Callable[[Any], Awaitable[None]]:
    """The worker side task (see the module docstring)."""

    async def limit_waker(worker: Wakeable) -> None:
        row = await host.connector.execute_query_one_async(
            query=queries.query("limits_any")
        )
        active = bool(row["any"])
        idle = asyncio.Event()
        worker.on_idle.append(idle.set)
        loop = asyncio.get_running_loop()
        wake_at: float | None = None
        try:
            while True:
                if wake_at is not None:
                    timeout: float | None = max(0.0, wake_at - loop.time())
                else:
                    timeout = None if active else RECHECK_S
                try:
                    await asyncio.wait_for(idle.wait(), timeout)
                except TimeoutError:
                    if wake_at is not None:
                        wake_at = None
                        worker.wake()
                    else:
                        row = await host.connector.execute_query_one_async(
                            query=queries.query("limits_any")
                        )
                        active = bool(row["any"])
                    continue
                idle.clear()
                if not active:
                    continue
                delay = await next_start_delay(host.connector)
                if delay is not None:
                    at = loop.time() + delay + MARGIN_S
                    wake_at = at if wake_at is None else min(wake_at, at)
        finally:
            worker.on_idle.remove(idle.set)

    return limit_waker
