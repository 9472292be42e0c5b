"""pgjobs in a FastAPI (or any ASGI) app: open and close with the app.

    from fastapi import FastAPI
    from pgjobs.contrib.fastapi import lifespan

    api = FastAPI(lifespan=lifespan(jobs))                # enqueue only
    api = FastAPI(lifespan=lifespan(jobs, worker=True))   # + an in-process worker

In a request, enqueue on the request's SQLAlchemy ``AsyncSession`` (engine
``postgresql+psycopg://``) with ``await jobs.enqueue_async(session, task,
{...})``: the job commits or rolls back with the session's transaction.

The in-process worker runs on the server's event loop (sync tasks in
threads) for small deployments; at shutdown it claims nothing new and lets
running jobs finish (``shutdown_graceful_timeout``). Larger ones run
``pgjobs worker`` processes instead: workers then scale apart from web
servers and a slow job never delays a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from pgjobs.app import App

logger = logging.getLogger("pgjobs.worker")


@contextlib.asynccontextmanager
async def running(
    app: App, *, worker: bool = False, **worker_options: Any
) -> AsyncIterator[App]:
    """``app`` open for the block; with ``worker``, a worker runs meanwhile
    (``worker_options``: procrastinate's, e.g. ``queues``, ``concurrency``)."""
    async with app.open_async():
        task: asyncio.Task[None] | None = None
        if worker:
            task = asyncio.create_task(
                app.run_worker_async(install_signal_handlers=False, **worker_options),
                name="pgjobs-worker",
            )
        try:
            yield app
        finally:
            if task is not None:
                await _stop(task)


async def _stop(task: asyncio.Task[None]) -> None:
    if task.done():  # it died on its own: say why
        if not task.cancelled() and task.exception() is not None:
            logger.error("in-process worker had stopped", exc_info=task.exception())
        return
    task.cancel()  # procrastinate's worker stops gracefully on cancellation
    with contextlib.suppress(asyncio.CancelledError):
        await task


def lifespan(
    app: App, *, worker: bool = False, **worker_options: Any
) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """A FastAPI/Starlette ``lifespan=``: ``running(app, ...)`` around the app."""

    @contextlib.asynccontextmanager
    async def _lifespan(_asgi_app: Any) -> AsyncIterator[None]:
        async with running(app, worker=worker, **worker_options):
            yield

    return _lifespan
