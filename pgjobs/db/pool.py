"""The worker's connection pool hands out its most recently used connection.

psycopg_pool serves connections first in, first out: a worker with ten pool
connections sends each statement to the backend that has been idle the
longest, so on an idle worker the claim that follows a notification runs in
a server process (and on a CPU) gone cold. Last in, first out keeps the
worker's traffic on its warmest backends: an idle worker's claim round trip
measured 0.4 ms shorter on PostgreSQL 15 (bench/results/issue18-session16.md),
and the connections left idle are the ones the pool closes when it shrinks
(``max_idle``), since it closes from the cold end.
"""

from __future__ import annotations

from typing import Any

import psycopg_pool


class LastInFirstOutPool(psycopg_pool.AsyncConnectionPool[Any]):
    """``AsyncConnectionPool`` taking its connections from the end it returns
    them to (the pool's other end, where it shrinks, stays the coldest)."""

    async def _get_ready_connection(self, timeout: float | None) -> Any:
        if self._pool and (timeout is None or timeout > 0.0):
            conn = self._pool.pop()
            self._nconns_min = min(self._nconns_min, len(self._pool))
            return conn
        return await super()._get_ready_connection(timeout)
