"""procrastinate's psycopg connector, pointed at pgjobs' configured database.

The database URL is resolved when the app is opened, not when it is built, so
importing a module that defines an App never starts the embedded server or
touches the network. An unreachable database fails fast with one clear line.
"""

from __future__ import annotations

from typing import Any

from procrastinate import connector as procrastinate_connector
from procrastinate import psycopg_connector

from pgjobs import database
from pgjobs.settings import Settings


class Connector(psycopg_connector.PsycopgConnector):
    def __init__(self, settings: Settings, **pool_args: Any) -> None:
        pool_args.setdefault("min_size", 1)
        pool_args.setdefault("max_size", settings.pool_size)
        super().__init__(**pool_args)
        self.settings = settings

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
