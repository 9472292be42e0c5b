"""The deadline sweep: end the waiting jobs whose start-by deadline passed.

Claims expire the late jobs they meet (``pgjobs.fetch_jobs``); this side
task of every worker does it for queues no worker claims from (a paused
queue, a queue with no worker), every ``PGJOBS_EXPIRY_INTERVAL`` seconds,
so such jobs still end ``cancelled``/expired and show in the views.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from procrastinate import connector as procrastinate_connector

from pgjobs.db import queries
from pgjobs.settings import Settings
from pgjobs.worker import outages


class SweepHost(Protocol):
    """What the sweep needs of its App: the database."""

    @property
    def connector(self) -> procrastinate_connector.BaseConnector: ...


logger = logging.getLogger("pgjobs.worker")

#: Most jobs one sweep statement expires (it repeats while it gets that many).
BATCH = 1000


async def expire_jobs(connector: Any) -> list[int]:
    """One sweep: every waiting job whose deadline passed, in batches."""
    expired: list[int] = []
    while True:
        rows = await connector.execute_query_all_async(
            query=queries.query("deadlines_expire"), limit=BATCH
        )
        expired += [row["id"] for row in rows]
        if len(rows) < BATCH:
            return expired


def sweeper(host: SweepHost, settings: Settings) -> Callable[[Any], Awaitable[None]]:
    """The worker side task that sweeps at a steady pace, forever."""

    async def deadline_sweeper(worker: Any) -> None:
        while True:
            await asyncio.sleep(settings.expiry_interval)
            try:
                expired = await expire_jobs(host.connector)
            except Exception as exc:
                if outages.is_connection_error(exc):
                    raise  # the worker retries the side task (one line per outage)
                logger.exception(
                    "expiring late jobs failed; trying again later",
                    extra={"action": "job_expiry_error"},
                )
                continue
            if expired:
                logger.info(
                    "%d job(s) expired unstarted at their start-by deadline: %s",
                    len(expired),
                    ", ".join(map(str, expired[:20]))
                    + (" ..." if len(expired) > 20 else ""),
                    extra={"action": "jobs_expired", "job_ids": expired},
                )

    return deadline_sweeper
