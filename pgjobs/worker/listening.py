"""How an idle worker learns about new jobs: LISTEN/NOTIFY, or polling.

procrastinate's worker LISTENs on a connection of its own and also polls
every 5 s in case a notification is missed. Behind a transaction pooler
(PgBouncer ``pool_mode = transaction``) LISTEN does not work: the session
that ran it goes back to the pooler's pool when the statement ends, the
notifications reach a server connection no client is attached to, and they
are dropped. The worker then finds new jobs only by its 5 s poll (p50 2.5 s
of idle latency), silently, and the LISTEN stays on a pooled server
connection after the worker is gone.

What pgjobs does instead, once per worker process:

- ``PGJOBS_LISTEN_DATABASE_URL`` set: the LISTEN connection (one per
  process, shared by everything the worker listens to) goes there — a
  direct connection to PostgreSQL, or through a session-mode pooler — while
  every other statement keeps using ``PGJOBS_DATABASE_URL``.
- Then a **probe**, on the connection the worker would LISTEN on, in two
  steps. First, is its session sticky? Its backend pid is read, a pool
  connection opens a transaction and reads its own, and the pid is read
  again: through a transaction pooler the two connections share a server
  connection, or the pid changes (PgBouncer hands out the server
  connection released last first). This step creates nothing
  session-scoped, so a worker SIGKILLed during it leaves nothing behind.
  Then, on a sticky session only: LISTEN on a private channel, NOTIFY it
  from a pool connection, wait up to ``PROBE_TIMEOUT`` — the very thing
  that matters, that a notification sent by another session reaches this
  one. Neither step asks the pooler (the worker's role cannot reach
  PgBouncer's admin console, and other poolers have none).
- The notification arrives: the worker LISTENs as procrastinate does, and
  polls every ``PGJOBS_POLL_INTERVAL`` s (default 5) as a fallback; one INFO
  line says so.
- Not sticky, or the notification does not arrive: the worker does not
  LISTEN at all (a LISTEN the second step made is undone on the server
  connection that ran it: ``UNLISTEN *`` in a transaction that checks, by
  its pid, that it runs on that very backend), and it polls
  every ``PGJOBS_POLL_INTERVAL`` s (default 1). One WARNING line at start
  says so and names the setting that gives instant wake-ups.

Polling costs one claim statement per interval per idle worker (an index
scan that finds nothing): 1 s is cheap, and it bounds the idle latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import psycopg
from procrastinate import manager
from psycopg import sql

from pgjobs.db import connections, queries

logger = logging.getLogger("pgjobs.worker")

#: Seconds the probe waits for its own notification (a direct connection
#: delivers it in about a millisecond).
PROBE_TIMEOUT = 1.0
#: Default poll interval when LISTEN works (procrastinate's) and when not.
POLL_WITH_LISTEN = 5.0
POLL_WITHOUT_LISTEN = 1.0
#: procrastinate's per-queue NOTIFY channel prefix (names stop at 63 bytes).
QUEUE_CHANNEL = "procrastinate_queue_v1#"
#: Rounds of the sticky-session test.
_STICKY_ROUNDS = 3
#: Server connections looked at to find the probe's again.
_UNLISTEN_TRIES = 10


class Listener:
    """One worker's wake-ups: the choice between LISTEN and polling, made
    once, then procrastinate's LISTEN loop (the worker's ``listener`` side
    task, restarted after a lost connection)."""

    def __init__(
        self,
        connector: Any,
        job_manager: Any,
        *,
        queues: Iterable[str] | None,
        new_job_event: asyncio.Event,
        on_notification: Callable[..., Awaitable[None]],
        on_connected: Callable[[], None],
        set_poll_interval: Callable[[float], None],
        on_listening: Callable[[Any], Awaitable[None]] | None = None,
    ) -> None:
        self._connector = connector
        self._job_manager = job_manager
        self._queues = list(queues) if queues else None
        self._new_job_event = new_job_event
        self._on_notification = on_notification
        self._on_connected = on_connected
        self._set_poll_interval = set_poll_interval
        #: Run on each new LISTEN session (pgjobs.worker.pushes).
        self._on_listening = on_listening
        self.listening: bool | None = None
        self._deciding = asyncio.Lock()

    async def listen(self) -> None:
        # (Re)connected: jobs may have arrived while nobody listened.
        self._new_job_event.set()
        if hasattr(self._connector, "on_listen_connected"):
            self._connector.on_listen_connected = self._on_connected
        if not await self.ready():
            self._new_job_event.set()  # the poll interval just changed
            await asyncio.Event().wait()  # polling: nothing to listen to
        queues = self._queues
        if queues and any(len(f"{QUEUE_CHANNEL}{q}".encode()) > 63 for q in queues):
            queues = None  # no channel of its own: listen to every queue
        if self._on_listening is None or not hasattr(
            self._connector, "on_listen_connected"
        ):  # not pgjobs' connector: procrastinate's LISTEN loop
            await self._job_manager.listen_for_jobs(
                on_notification=self._on_notification, queues=queues
            )
            return
        await self._connector.listen_notify(
            on_notification=self._notified,
            channels=manager.get_channel_for_queues(queues=queues),
            on_listening=self._on_listening,
        )

    async def _notified(self, channel: str, payload: str) -> None:
        """procrastinate's ``listen_for_jobs`` callback: the payload as JSON."""
        await self._on_notification(channel=channel, notification=json.loads(payload))

    async def ready(self) -> bool:
        """Decide (first call only) and set the worker's poll interval;
        True when the worker should LISTEN."""
        async with self._deciding:  # the listener and the wake-ups ask
            if self.listening is None:
                self.listening = await self._decide()
            return self.listening

    async def _decide(self) -> bool:
        connector = self._connector
        settings = getattr(connector, "settings", None)
        probe = getattr(connector, "_get_standalone_connection", None)
        if settings is None or probe is None:  # not pgjobs' connector
            return True
        works = await listen_works(connector)
        chosen = settings.poll_interval
        listen_url = settings.listen_database_url
        where = (
            f"PGJOBS_LISTEN_DATABASE_URL ({connections.redact(listen_url)})"
            if listen_url
            else "the database connection"
        )
        if works and not listen_url:
            # The pool's database gives sessions of their own (LISTEN works
            # on it): the claims can be server-side prepared statements.
            self._job_manager.prepared_claims = True
        if works:
            interval = chosen or POLL_WITH_LISTEN
            logger.info(
                "new jobs wake this worker by LISTEN/NOTIFY on %s; it also "
                "polls every %g s (PGJOBS_POLL_INTERVAL)",
                where,
                interval,
                extra={"action": "wakeups", "listen": True},
            )
        else:
            interval = chosen or POLL_WITHOUT_LISTEN
            logger.warning(
                "LISTEN/NOTIFY does not reach this worker on %s (a transaction "
                "pooler?): polling for new jobs every %g s (PGJOBS_POLL_INTERVAL); "
                "set PGJOBS_LISTEN_DATABASE_URL to a direct or session-pooled "
                "connection for instant wake-ups",
                where,
                interval,
                extra={"action": "wakeups", "listen": False},
            )
        self._set_poll_interval(interval)
        return works


async def listen_works(connector: Any, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether a NOTIFY from a pool connection reaches the LISTEN connection."""
    async with connector._get_standalone_connection() as conn:
        if not await _session_is_sticky(connector, conn, timeout):
            return False
        channel = f"pgjobs_probe_{secrets.token_hex(8)}"
        listen = sql.SQL(queries.query("listening_listen")).format(
            channel=sql.Identifier(channel)
        )
        async with conn.transaction():
            await conn.execute(listen)
            pid = await _backend_pid(conn)
        await connector.execute_query_async(
            query=queries.query("listening_notify"), channel=channel
        )
        # Read to the end (stop_after=1 ends the loop): a generator left
        # suspended holds the connection's lock until the garbage collector
        # finalises it, and the connection's close waits for that lock.
        received = False
        async for _ in conn.notifies(timeout=timeout, stop_after=1):
            received = True
        if received:
            return True  # closing the connection ends its LISTEN
        # Shielded: a worker stopping meanwhile still cleans up.
        await asyncio.shield(_unlisten(conn, pid, channel))
        return False


async def _session_is_sticky(
    connector: Any, conn: psycopg.AsyncConnection[Any], timeout: float
) -> bool:
    """Whether ``conn`` keeps one server session between its statements.

    Nothing session-scoped is created, so a worker killed meanwhile leaves
    nothing behind. In each of ``_STICKY_ROUNDS`` rounds: ``conn`` reads its
    backend pid; a pool connection opens a transaction (pinning a server
    connection, even through a transaction pooler) and reads its own;
    ``conn`` reads its pid again. Through a transaction pooler, in one round
    or another, the pool connection gets the server connection ``conn`` just
    released (PgBouncer reuses the last one released first), or ``conn``
    gets another one, or waits for one: not sticky.
    """
    for _ in range(_STICKY_ROUNDS):
        first = await _backend_pid(conn)
        again: asyncio.Future[int] | None = None
        try:
            async with connector.pool.connection() as other, other.transaction():
                others = await _backend_pid(other)
                again = asyncio.ensure_future(_backend_pid(conn))
                done, _ = await asyncio.wait({again}, timeout=timeout)
            second = await again  # answered once the pool connection's is free
        except BaseException:
            # The pool connection failed (a terminated backend, often both
            # at once): the read on ``conn`` must not be left behind with an
            # exception nobody retrieves (asyncio logs it as an ERROR).
            if again is not None:
                await _discard(again)
            raise
        if not done or others == first or second != first:
            return False
    return True


async def _discard(future: asyncio.Future[Any]) -> None:
    """Cancel ``future`` if still running and consume its outcome."""
    future.cancel()
    with contextlib.suppress(BaseException):
        await future


async def _backend_pid(conn: psycopg.AsyncConnection[Any]) -> int:
    cursor = await conn.execute(queries.query("listening_backend_pid"))
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def _unlisten(conn: psycopg.AsyncConnection[Any], pid: int, channel: str) -> None:
    """Undo the probe's LISTEN on the pooled server connection ``pid``.

    Each try holds a transaction open on one more client connection, so
    each gets a server connection the previous ones do not hold: the
    pooler's idle server connections are walked until ``pid`` comes up.
    """
    conns = [conn]
    pinned: list[Any] = []
    try:
        for _ in range(_UNLISTEN_TRIES):
            current = conns[-1]
            transaction = current.transaction()
            await transaction.__aenter__()
            pinned.append((current, transaction))
            if await _backend_pid(current) == pid:
                await current.execute(queries.query("listening_unlisten_all"))
                return
            info = await _same_target(conn)
            conns.append(await psycopg.AsyncConnection.connect(**info))
    finally:
        for _, transaction in reversed(pinned):
            await transaction.__aexit__(None, None, None)
        for extra in conns[1:]:
            await extra.close()
    logger.warning(
        "the LISTEN/NOTIFY probe's LISTEN on %s stays on server connection "
        "(pid %s) until the pooler closes it: harmless, nothing notifies it",
        channel,
        pid,
        extra={"action": "probe_listen_left"},
    )


async def _same_target(conn: psycopg.AsyncConnection[Any]) -> dict[str, Any]:
    """Options to open another connection like ``conn`` (same target)."""
    params: dict[str, Any] = conn.info.get_parameters()
    params["password"] = conn.info.password
    params["prepare_threshold"] = None
    params["autocommit"] = True
    return params
