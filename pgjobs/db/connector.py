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
(``pgjobs.worker.outages``) sends the statement again on a fresh one.

Pool connections have client-side prepared statements off unless
``PGJOBS_PREPARE_THRESHOLD`` (or ``?prepare_threshold=`` in the URL) turns
them on (see ``pgjobs.db.connections``); the one exception is the worker's
claim where each pool connection is a session of its own
(``execute_prepared_all_async``, ``JobManager.prepared_claims``). A server
out of connection slots at start (``too many clients``) is waited for, with
one WARNING, instead of failing;
a pool that psycopg_pool closed is replaced (``reopen``): a closed pool
refuses every request, forever. The pool hands out the connection returned
last (``pgjobs.db.pool``): an idle worker's claim runs on a warm backend.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, LiteralString

import psycopg
import psycopg_pool
from procrastinate import connector as procrastinate_connector
from procrastinate import psycopg_connector
from procrastinate import sql as procrastinate_sql

from pgjobs.db import connections
from pgjobs.db.pool import LastInFirstOutPool
from pgjobs.settings import Settings

logger = logging.getLogger("pgjobs.worker")


#: A connection's psycopg prepare_threshold that no statement reaches.
_PREPARE_ON_REQUEST_ONLY = 2**31


async def _autocommit(conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.set_autocommit(True)


class Connector(psycopg_connector.PsycopgConnector):
    def __init__(self, settings: Settings, **pool_args: Any) -> None:
        pool_args.setdefault("min_size", 1)
        pool_args.setdefault("max_size", settings.pool_size)
        pool_args.setdefault("pool_factory", LastInFirstOutPool)
        super().__init__(**pool_args)
        self.settings = settings
        #: Called each time a LISTEN connection opens (the worker's logs).
        self.on_listen_connected: Callable[[], None] | None = None

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
            info = connections.conninfo(self.settings)
            connections.connect(info).close()  # fail fast with a clear message
            self._set_conninfo(info)

    def _set_conninfo(self, info: str) -> None:
        info, options = connections.options(info, self.settings)
        self._pool_args["conninfo"] = info
        self._pool_args["kwargs"] = {**options, **self._pool_args.get("kwargs", {})}

    async def _resolve_conninfo_async(self) -> None:
        """``_resolve_conninfo``, waiting out a server that has no free
        connection slot (see ``connections.wait_for_free_slot``)."""
        if "conninfo" in self._pool_args:
            return
        info = connections.conninfo(self.settings)
        loop = asyncio.get_running_loop()
        conn = await loop.run_in_executor(
            None, connections.wait_for_free_slot, lambda: connections.connect(info)
        )
        conn.close()
        self._set_conninfo(info)

    async def open_async(self, pool: Any = None) -> None:
        if pool is not None or self._async_pool is not None:
            await super().open_async(pool)
            return
        await self._resolve_conninfo_async()
        if self._sync_connector is not None:
            await super().open_async(None)  # closes the sync connector first
            return
        # procrastinate's opens with wait=True: after 30 s short of
        # connections psycopg_pool closes the pool for good. The pool fills
        # in the background instead; requests wait for a connection.
        self._async_pool = await self._create_pool(self._pool_args)
        await self._async_pool.open(wait=False)

    async def reopen(self) -> bool:
        """Replace the pool if psycopg_pool closed it (True if it did)."""
        pool = self._async_pool
        if pool is None or not pool.closed or self._pool_externally_set:
            return False
        logger.warning(
            "the connection pool was closed: opening a new one",
            extra={"action": "pool_reopened"},
        )
        new_pool = await self._create_pool(self._pool_args)
        await new_pool.open(wait=False)
        self._async_pool = new_pool
        return True

    @asynccontextmanager
    async def _get_standalone_connection(
        self,
    ) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """procrastinate's LISTEN connection: on ``PGJOBS_LISTEN_DATABASE_URL``
        when set (see pgjobs.worker.listening), else on the pool's database."""
        listen_url = self.settings.listen_database_url
        if listen_url is None:
            async with super()._get_standalone_connection() as conn:
                self._listen_connected()
                yield conn
            return
        info, options = connections.options(listen_url, self.settings)
        async with await psycopg.AsyncConnection.connect(
            info, **options, autocommit=True, connect_timeout=10
        ) as conn:
            self._listen_connected()
            yield conn

    async def execute_prepared_all_async(
        self, query: LiteralString, **arguments: Any
    ) -> list[dict[str, Any]]:
        """``execute_query_all_async`` as a server-side prepared statement
        (only where each pool connection is a session of its own: see
        ``JobManager.prepared_claims``)."""
        async with psycopg_connector.wrap_exceptions(), self._get_cursor() as cursor:
            conn = cursor.connection
            if conn.prepare_threshold is None:
                # psycopg prepares nothing, even on request, with no
                # threshold: one that is never reached prepares only this.
                conn.prepare_threshold = _PREPARE_ON_REQUEST_ONLY
            await cursor.execute(query, self._wrap_json(arguments), prepare=True)
            rows: list[dict[str, Any]] = await cursor.fetchall()
            return rows

    async def listen_notify(
        self,
        on_notification: Any,
        channels: Iterable[str],
        on_listening: Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]]
        | None = None,
    ) -> None:
        """procrastinate's LISTEN loop (reconnecting for ever), with
        ``on_listening`` run on each new LISTEN session once its channels
        are listened to (pgjobs.worker.pushes)."""
        async with psycopg_connector.wrap_exceptions():
            while True:
                async with self._get_standalone_connection() as connection:
                    for channel_name in channels:
                        await connection.execute(
                            query=self._make_dynamic_query(
                                query=procrastinate_sql.queries["listen_queue"],
                                channel_name=channel_name,
                            ),
                        )
                    if on_listening is not None:
                        await on_listening(connection)
                    await self._loop_notify(
                        on_notification=on_notification, connection=connection
                    )

    def _listen_connected(self) -> None:
        if self.on_listen_connected is not None:
            self.on_listen_connected()

    def get_sync_connector(self) -> procrastinate_connector.BaseConnector:
        if self._async_pool is None:
            self._resolve_conninfo()
        return super().get_sync_connector()
