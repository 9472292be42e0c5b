"""A worker's start: start-up queries that outlive outages, a warm pool.

- **Start-up queries** (pruning stalled workers, registering this one)
  retry a lost connection like every other loop (procrastinate's worker
  died there with a traceback when the database went away as it started);
  a worker pointed at a hot standby stops at once with one line.
- **A warm pool**: the connections the worker will need are opened before
  the first job. Under load a worker uses a connection per claim, per
  outcome write and per running task that talks to the database; a pool
  that grows only when the load arrives adds a connection set-up (several
  ms, one at a time) to the first jobs' latency, and again after every idle
  period long enough for the pool to shrink.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from pgjobs.db import connections
from pgjobs.worker import outages

_T = TypeVar("_T")

#: Seconds a worker waits for its pool to fill before working with fewer.
WARM_UP = 10.0


async def retry_start(
    what: str,
    call: Callable[[], Awaitable[_T]],
    *,
    settings: Any,
    outage: outages.Outage,
    lost: Callable[[str, BaseException, float], Awaitable[bool]],
    stop_event: asyncio.Event,
) -> _T | None:
    """Run a start-up query, retrying a lost connection until it works;
    None if the worker is asked to stop meanwhile."""

    async def once() -> _T:
        result = await call()
        outage.recovered()
        return result

    async def failed(exc: BaseException, delay: float) -> bool:
        if connections.is_read_only(exc):  # pointed at a hot standby
            raise connections.read_only(settings) from None
        return await lost(what, exc, delay)

    return await outages.retrying(
        once, failed, wait=functools.partial(outages.sleep_or_stop, stop=stop_event)
    )


async def warm_pool(
    connector: Any,
    *,
    concurrency: int,
    stop_event: asyncio.Event,
    logger: logging.Logger,
) -> None:
    """Open the connections the worker will need before the first job."""
    pool = getattr(connector, "_async_pool", None)
    if pool is None:
        return
    target = min(pool.max_size, concurrency + 2)
    if pool.min_size >= target:
        return
    await pool.resize(min_size=target, max_size=pool.max_size)
    # Not pool.wait(): on a timeout (a server short of connection slots)
    # it closes the pool for good. The pool keeps filling meanwhile.
    deadline = time.monotonic() + WARM_UP
    while pool.get_stats().get("pool_size", target) < target:
        if time.monotonic() > deadline or stop_event.is_set():
            logger.warning(
                "only %d of the %d connections this worker uses are open "
                "after %g s (the database short of connection slots?): "
                "working with them, more open as slots free",
                pool.get_stats().get("pool_size", 0),
                target,
                WARM_UP,
                extra={"action": "pool_short"},
            )
            return
        await asyncio.sleep(0.05)


async def register(
    job_manager: Any,
    *,
    stalled_worker_timeout: float,
    settings: Any,
    outage: outages.Outage,
    lost: Callable[[str, BaseException, float], Awaitable[bool]],
    stop_event: asyncio.Event,
    logger: logging.Logger,
    steps: Sequence[tuple[str, Callable[[], Awaitable[Any]]]] = (),
) -> int | None:
    """procrastinate's start: prune the stalled workers, register this one,
    then run pgjobs' start ``steps`` (e.g. storing the declared limits); the
    worker's id, or None if asked to stop while the database was away."""
    start = functools.partial(
        retry_start, settings=settings, outage=outage, lost=lost, stop_event=stop_event
    )
    pruned = await start(
        "pruning stalled workers",
        functools.partial(job_manager.prune_stalled_workers, stalled_worker_timeout),
    )
    if pruned:
        logger.debug("Pruned stalled workers: %s", pruned)
    worker_id: int | None = await start(
        "registering the worker", job_manager.register_worker
    )
    for what, step in steps:
        if worker_id is not None:
            await start(what, step)
    return worker_id
