"""Live updates: ``/live`` streams job events to the pages (server-sent events).

Each open page holds one stream (``pgjobs.events.stream``: its own connection,
LISTEN or polling per ``PGJOBS_EVENTS_LISTEN``); at most ``MAX_LIVE`` at once.
The page's script reloads its live sections when an event arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import asdict

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from pgjobs.dashboard.state import MAX_LIVE, dashboard_of
from pgjobs.monitoring import events

#: Seconds between two keep-alive comments on an idle stream.
KEEPALIVE = 15.0
_END = object()


def _now(request: Request) -> events.Position:
    with dashboard_of(request).connection() as conn:
        return events.position(conn)


async def endpoint(request: Request) -> Response:
    dashboard = dashboard_of(request)
    if dashboard.live_clients >= MAX_LIVE:
        return Response("too many live pages open\n", status_code=503)
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=1000)
    # Start after the newest event now (or the last one this page got, on a
    # reconnect): the page refreshes once the stream is open, so nothing that
    # happened between its rendering and this point is missed either.
    resume = request.headers.get("last-event-id", "")
    try:
        after = events.Position.parse(resume)
    except ValueError:
        after = await run_in_threadpool(_now, request)

    async def pump() -> None:
        try:
            async for event in events.stream(
                dashboard.settings,
                after=after,
                statement_timeout=dashboard.settings.dashboard_statement_timeout,
            ):
                if queue.full():  # the page reloads sections anyway
                    continue
                queue.put_nowait(event)
        finally:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(_END)

    async def body() -> AsyncIterator[str]:
        dashboard.live_clients += 1
        task = asyncio.create_task(pump())
        try:
            yield "retry: 5000\n\n"
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), KEEPALIVE)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if item is _END:
                    return
                assert isinstance(item, events.JobEvent)
                data = json.dumps(asdict(item), default=str)
                yield f"event: job\nid: {item.cursor}\ndata: {data}\n\n"
        finally:
            dashboard.live_clients -= 1
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )
