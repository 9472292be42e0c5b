"""The task stats rollups' pruning: every worker deletes the
``pgjobs.task_stats`` rollups older than ``PGJOBS_RETENTION_STATS_ROLLUPS_DAYS``
(7) every ``INTERVAL`` seconds, so that they stay bounded with no retention
policy set (``pgjobs prune`` deletes them too). A task writes a few hundred
rows a minute at most: each pass is a few indexed deletes.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from procrastinate import connector as procrastinate_connector

from pgjobs.db import queries
from pgjobs.settings import Settings
from pgjobs.worker import outages


class PruningHost(Protocol):
    """What the pruning needs of its App: the database."""

    @property
    def connector(self) -> procrastinate_connector.BaseConnector: ...


logger = logging.getLogger("pgjobs.worker")

#: Seconds between two passes of each worker.
INTERVAL = 600.0
#: Most rows one statement deletes (it repeats while it gets that many).
BATCH = 5000


async def prune_stats_rollups(connector: Any, older_than: datetime.timedelta) -> int:
    """One pass: every rollup row older than ``older_than``, in batches."""
    deleted = 0
    while True:
        rows = await connector.execute_query_all_async(
            query=queries.query("retention_delete_stats_rollups"),
            older_than=older_than,
            now=None,
            batch_size=BATCH,
        )
        count = int(rows[0]["deleted"]) if rows else 0
        deleted += count
        if count < BATCH:
            return deleted


def pruner(host: PruningHost, settings: Settings) -> Callable[[Any], Awaitable[None]]:
    """The worker side task that prunes at a steady pace, forever."""
    older_than = datetime.timedelta(days=settings.retention_stats_rollups_days)

    async def stats_rollups_pruner(worker: Any) -> None:
        while True:
            await asyncio.sleep(INTERVAL)
            try:
                await prune_stats_rollups(host.connector, older_than)
            except Exception as exc:
                if outages.is_connection_error(exc):
                    raise  # the worker retries the side task (one line per outage)
                logger.exception(
                    "pruning the task stats rollups failed; trying again later",
                    extra={"action": "stats_rollups_prune_error"},
                )

    return stats_rollups_pruner
