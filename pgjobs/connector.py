"""procrastinate's psycopg connector, pointed at pgjobs' configured database.

The database URL is resolved when the app is opened, not when it is built, so
importing a module that defines an App never starts the embedded server or
touches the network. An unreachable database fails fast with one clear line.

Every statement procrastinate and pgjobs send through this connector is one
self-contained statement (a SQL function call), so pool connections run in
autocommit: one round trip per statement instead of BEGIN, statement, COMMIT.
procrastinate's pool also pings every connection on checkout; pgjobs does
not: a connection that died (database restart, terminated backend) fails its
statement, the pool discards it, and the worker's retry loop
(``pgjobs.resilience``) sends the statement again on a fresh one.
"""

from __future__ import annotations

from typing import Any

import psycopg
import psycopg_pool
from procrastinate import connector as procrastinate_connector
from procrastinate import psycopg_connector

from pgjobs import database
from pgjobs.settings import Settings


async def _autocommit(conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.set_autocommit(True)


class Connector(psycopg_connector.PsycopgConnector):
    def __init__(self, settings: Settings, **pool_args: Any) -> None:
        pool_args.setdefault("min_size", 1)
        pool_args.setdefault("max_size", settings.pool_size)
        super().__init__(**pool_args)
        self.settings = settings

    async def _create_pool(
        self, pool_args: dict[str, Any]
    ) -> psycopg_pool.AsyncConnectionPool[Any]:
        # procrastinate's own adds check=AsyncConnectionPool.check_connection:
        # one extra round trip per statement (see the module docstring).
        # The autocommit set-up goes to the async pool only: the sync
        # connector (procrastinate's get_sync_connector) reuses pool_args.
        pool: psycopg_pool.AsyncConnectionPool[Any] = self._pool_factory(
            **{"configure": _autocommit, **pool_args}, open=False
        )
        return pool

    def _resolve_conninfo(self) -> None:
        if "conninfo" not in self._pool_args:
            info = database.conninfo(self.settings)
            database.connect(info).close()  # fail fast with a clear message
            self._pool_args["conninfo"] = info

    async def open_async(self, pool: Any = None) -> None:
        if pool is None:
            self._resolve_conninfo()
        await super().open_async(pool)

    def get_sync_connector(self) -> procrastinate_connector.BaseConnector:
        if self._async_pool is None:
            self._resolve_conninfo()
        return super().get_sync_connector()
