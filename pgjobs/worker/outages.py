"""Riding out database outages: what counts as one, backoff, one log line each.

A worker (``pgjobs.worker.worker``) keeps running while its database restarts or
its connections are cut: every loop that talks to the database retries a
lost connection with capped, jittered exponential backoff. The first failure
of an outage logs one WARNING ("database unavailable ..., retrying"), the
first success after it one INFO ("database reachable again"); the retries in
between log at DEBUG only.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import psycopg
import psycopg_pool

from pgjobs.db import connections
from pgjobs.errors import DatabaseUnavailable

logger = logging.getLogger("pgjobs.worker")

_T = TypeVar("_T")

#: First and longest wait between two attempts, in seconds.
BASE_DELAY = 0.2
MAX_DELAY = 10.0

_CONNECTION_ERRORS = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg_pool.PoolTimeout,
    DatabaseUnavailable,
    ConnectionError,
)


def is_connection_error(exc: BaseException) -> bool:
    """True when ``exc`` (or what it wraps) means the database is unreachable.

    procrastinate wraps driver errors in ``ConnectorException``; the cause
    chain is followed. Errors such as a constraint violation are not outages.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, _CONNECTION_ERRORS):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def is_not_running_error(exc: BaseException) -> bool:
    """procrastinate's "Job was not found or not in "doing" status" refusal:
    the job was rescued (or cancelled) while this worker still ran it."""
    current: BaseException | None = exc
    for _ in range(5):
        if current is None:
            return False
        if isinstance(current, psycopg.errors.RaiseException) and (
            'not in "doing"' in str(current)
        ):
            return True
        current = current.__cause__ or current.__context__
    return False


def describe(exc: BaseException) -> str:
    """``Type: first line`` of the connection error behind ``exc`` (no password)."""
    current: BaseException | None = exc
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        if isinstance(current, _CONNECTION_ERRORS):
            exc = current
            break
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    text = str(exc).strip()
    first_line = text.splitlines()[0] if text else ""
    return connections.redact(f"{type(exc).__name__}: {first_line}".rstrip(": "))


def backoff(attempt: int) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based): full jitter."""
    ceiling = min(MAX_DELAY, BASE_DELAY * (2 ** min(attempt, 16)))
    return random.uniform(ceiling / 2, ceiling)


class Outage:
    """Shared by a worker's loops: logs each outage once, and its end."""

    def __init__(self) -> None:
        self.since: float | None = None
        #: When the last outage ended (monotonic clock), if there was one.
        self.ended_at: float | None = None
        #: Called with the outage's start (monotonic clock) when one ends.
        self.on_recovered: list[Callable[[float], None]] = []

    def settled(self, seconds: float) -> bool:
        """No outage now, and none ended in the last ``seconds``."""
        if self.since is not None:
            return False
        return self.ended_at is None or time.monotonic() - self.ended_at >= seconds

    def failed(self, where: str, exc: BaseException, delay: float) -> None:
        if self.since is None:
            self.since = time.monotonic()
            logger.warning(
                "database unavailable (%s: %s), retrying in %.1f s",
                where,
                describe(exc),
                delay,
                extra={"action": "database_unavailable", "where": where},
            )
        else:
            logger.debug("%s: database still unavailable, retry in %.1fs", where, delay)

    def recovered(self) -> None:
        if self.since is not None:
            self.ended_at = time.monotonic()
            down = self.ended_at - self.since
            self.since = None
            logger.warning(  # paired with the "unavailable" line
                "database reachable again after %.1f s",
                down,
                extra={"action": "database_reachable", "outage_s": round(down, 3)},
            )
            for callback in self.on_recovered:
                callback(self.ended_at - down)


async def sleep_or_stop(delay: float, stop: asyncio.Event) -> bool:
    """Sleep ``delay`` seconds; return True at once if ``stop`` gets set."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=delay)
    except TimeoutError:
        return False
    return True


async def retrying(
    call: Callable[[], Awaitable[_T]],
    failed: Callable[[BaseException, float], Awaitable[bool]],
    *,
    wait: Callable[[float], Awaitable[bool]] | None = None,
    max_delay: float | None = None,
    fresh_after: float | None = None,
) -> _T | None:
    """``call()`` again and again until it returns, with backoff between tries.

    After each exception, ``failed(exc, delay)`` (called while it is being
    handled) logs it and says whether to try again in ``delay`` seconds; it
    raises an error not to retry, and False gives up (None). ``wait(delay)``
    sleeps instead of ``asyncio.sleep`` and returns True to stop retrying
    (None). ``max_delay`` caps the delays; a try that ran for over
    ``fresh_after`` seconds before it failed had got going again: the
    backoff starts low again.
    """
    attempt = 0
    while True:
        started = time.monotonic()
        try:
            return await call()
        except Exception as exc:
            if fresh_after is not None and time.monotonic() - started > fresh_after:
                attempt = 0
            delay = backoff(attempt)
            if max_delay is not None:
                delay = min(delay, max_delay)
            attempt += 1
            if not await failed(exc, delay):
                return None
        if wait is None:
            await asyncio.sleep(delay)
        elif await wait(delay):
            return None


class Troubles(Protocol):
    """Where failures that are not an outage are logged
    (``pgjobs.worker.query_errors.Streaks``)."""

    def failed(self, where: str, exc: BaseException, delay: float) -> None: ...


class PoolRecovery:
    """What a worker does when one of its loops lost its connection: log the
    outage (once, through ``outage``) and drop the pool's dead connections,
    so the retry gets a live one instead of the next dead one."""

    def __init__(
        self,
        connector: Any,
        *,
        outage: Outage,
        trouble: Troubles,
        stopping: Callable[[], bool],
    ) -> None:
        self._connector = connector
        self._outage = outage
        self._trouble = trouble
        self._stopping = stopping
        self._checking = False

    async def __call__(self, where: str, exc: BaseException, delay: float) -> None:
        if where == "listener" and connections.no_free_slot(exc):
            # The pool works; only the LISTEN connection finds no slot.
            self._trouble.failed("opening the LISTEN connection", exc, delay)
            return
        self._outage.failed(where, exc, delay)
        reopen = getattr(self._connector, "reopen", None)
        if reopen is not None and not self._stopping():
            await reopen()  # psycopg_pool closed it: it would refuse forever
        pool = getattr(self._connector, "_async_pool", None)
        if pool is None or self._checking:
            return
        self._checking = True
        try:
            await asyncio.wait_for(pool.check(), timeout=5)
        except Exception:  # best effort; the retry will tell
            pass
        finally:
            self._checking = False
