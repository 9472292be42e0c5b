"""Database errors that are not a lost connection, in the worker's loops.

A claim or an outcome write can fail with the connection alive: a lock
timeout, a statement timeout, a serialization failure, a pooler's refusal
(``query_wait_timeout``), a privilege revoked for a moment. Before, the claim
loop re-raised them (the worker exited) and the outcome writer dropped them
(the job stayed ``doing`` until rescued as stalled). Now:

- every such error is retried with the same capped, jittered backoff as a
  lost connection (``pgjobs.worker.outages.backoff``); the first failure of a
  streak logs one WARNING per place (``claiming jobs``, ``recording job
  outcomes``...), the first success after it one line with the count;
- an outcome is never dropped: it is retried until it is stored (a stopping
  worker gives up only once the trouble outlasted its shutdown grace, and
  the job is then rescued as stalled, like a killed worker's); after three
  refused group writes in a row, outcomes go one per write and a refused
  one goes to the back of the line, so one outcome the database keeps
  refusing holds up no other;
- a LISTEN connection that finds no free connection slot (the pool's
  connections work) is logged here too, not as a database outage;
- a claim failing with an error that retrying cannot cure — the schema is
  missing or outdated, the role lacks a privilege — is a misconfiguration:
  the worker logs ONE line saying what to change, stops claiming, lets its
  running jobs finish and write their outcomes, and exits non-zero
  (``WorkerMisconfigured``).
"""

from __future__ import annotations

import logging
import time

import psycopg
from psycopg import errors as pg_errors

from pgjobs.db import connections
from pgjobs.errors import PgjobsError
from pgjobs.worker import outages

logger = logging.getLogger("pgjobs.worker")

_SCHEMA_HINT = "the pgjobs schema is missing or outdated: run `pgjobs db upgrade`"
#: Errors no retry cures, and what to change.
_MISCONFIGURATIONS: tuple[tuple[type[psycopg.Error], str], ...] = (
    (pg_errors.UndefinedTable, _SCHEMA_HINT),
    (pg_errors.UndefinedFunction, _SCHEMA_HINT),
    (pg_errors.InvalidSchemaName, _SCHEMA_HINT),
    (pg_errors.UndefinedColumn, _SCHEMA_HINT),
    (
        pg_errors.InsufficientPrivilege,
        "the worker's database role lacks a privilege: make it a member of "
        "pgjobs_worker (GRANT pgjobs_worker TO <role>) or connect as the "
        "schema owner",
    ),
)


class WorkerMisconfigured(PgjobsError):
    """The worker stopped: its claims fail in a way retrying cannot cure."""


def _psycopg_error(exc: BaseException) -> psycopg.Error | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, psycopg.Error):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def is_database_error(exc: BaseException) -> bool:
    """True when the database refused a statement (connection alive)."""
    return not outages.is_connection_error(exc) and _psycopg_error(exc) is not None


def misconfiguration(exc: BaseException) -> str | None:
    """What to change, when ``exc`` is an error retrying cannot cure."""
    error = _psycopg_error(exc)
    for kind, hint in _MISCONFIGURATIONS:
        if isinstance(error, kind):
            return hint
    return None


def describe(exc: BaseException) -> str:
    """``Type: first line`` of the database error behind ``exc``."""
    error = _psycopg_error(exc) or exc
    text = str(error).strip()
    first_line = text.splitlines()[0] if text else ""
    return connections.redact(f"{type(error).__name__}: {first_line}".rstrip(": "))


class Streaks:
    """Per place: the first failure of a streak logs a WARNING, the first
    success after it one line; the failures in between DEBUG only."""

    def __init__(self) -> None:
        self._since: dict[str, tuple[float, int]] = {}

    def active(self) -> float | None:
        """When the oldest streak now running began (monotonic), if any."""
        return min((since for since, _ in self._since.values()), default=None)

    def failed(self, where: str, exc: BaseException, delay: float) -> None:
        since, count = self._since.get(where, (time.monotonic(), 0))
        self._since[where] = (since, count + 1)
        if count:
            logger.debug("%s failed again, retry in %.1f s", where, delay)
            return
        logger.warning(
            "%s failed (%s), retrying in %.1f s",
            where,
            describe(exc),
            delay,
            extra={"action": "database_error", "where": where},
        )

    def recovered(self, where: str) -> None:
        streak = self._since.pop(where, None)
        if streak is None:
            return
        since, count = streak
        logger.warning(  # paired with the "failed" line
            "%s works again after %d failed attempt(s) in %.1f s",
            where,
            count,
            time.monotonic() - since,
            extra={"action": "database_error_over", "where": where},
        )
