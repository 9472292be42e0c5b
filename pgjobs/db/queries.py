"""The one module that loads pgjobs' own SQL, and runs it on psycopg connections.

Statements live in ``sql/queries/*.sql`` under ``-- name: <query> --`` headers
(procrastinate's format) and are loaded once. Callers pass a psycopg
connection they own (so the statement joins their transaction) and get rows
as dicts; database errors are translated to pgjobs exceptions here. Code that
runs inside the worker (job manager, stalled rescue, breakers, progress,
interruptions, schedules' ticks) takes the statement from :func:`query` and
runs it on procrastinate's connector, the worker's pool, whose errors
procrastinate translates.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, LiteralString

import psycopg
from procrastinate import exceptions as procrastinate_exceptions
from psycopg.rows import dict_row

from pgjobs.db import resources
from pgjobs.errors import (
    DatabaseUnavailable,
    PermissionDenied,
    PgjobsError,
    QueryTimeout,
    ReadOnlyDatabase,
    SchemaError,
)

_HEADER = re.compile(r"^-- name: (?P<name>[a-z0-9_]+) --$", re.MULTILINE)

Row = dict[str, Any]


@functools.cache
def all_queries() -> dict[str, str]:
    queries: dict[str, str] = {}
    for path in sorted((resources.sql_dir() / "queries").glob("*.sql")):
        text = path.read_text(encoding="utf-8")
        parts = _HEADER.split(text)
        # parts = [preamble, name1, body1, name2, body2, ...]
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if name in queries:
                raise SchemaError(f"query {name!r} is defined twice ({path.name})")
            queries[name] = body.strip()
    return queries


def query(name: str) -> LiteralString:
    # Loaded from our own files, never built from input: a literal for psycopg.
    return all_queries()[name]


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0]


def translation(exc: BaseException) -> PgjobsError | None:
    """The pgjobs error a database error means to a user, if it has one.

    procrastinate's connectors wrap psycopg errors in ``ConnectorException``
    (the psycopg error is its cause): those are looked through.
    """
    if isinstance(exc, procrastinate_exceptions.ConnectorException):
        cause = exc.__cause__
        return translation(cause) if isinstance(cause, psycopg.Error) else None
    if isinstance(
        exc, psycopg.errors.UndefinedTable | psycopg.errors.UndefinedFunction
    ):
        return SchemaError(
            f"pgjobs schema is missing or outdated (run `pgjobs db upgrade`): "
            f"{str(exc).splitlines()[0]}"
        )
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return PermissionDenied(
            f"{_first_line(exc)}: this database role may not do that "
            "(pgjobs_monitor reads only the monitoring views: pgjobs stats, "
            "health, metrics, schedules health; jobs, dead letters, breakers "
            "and schedules need pgjobs_worker or the schema owner)"
        )
    if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
        return ReadOnlyDatabase(
            f"{_first_line(exc)}: the database is read-only (a hot standby or "
            "default_transaction_read_only = on); run this on the primary"
        )
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return QueryTimeout(_first_line(exc))
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return DatabaseUnavailable(f"database connection lost: {_first_line(exc)}")
    return None


@contextmanager
def translated_errors() -> Iterator[None]:
    try:
        yield
    except (psycopg.Error, procrastinate_exceptions.ConnectorException) as exc:
        error = translation(exc)
        if error is None:
            raise
        raise error from None


def fetch_all(conn: psycopg.Connection[Any], name: str, **params: Any) -> list[Row]:
    with translated_errors(), conn.cursor(row_factory=dict_row) as cursor:
        cursor.execute(query(name), params)
        return cursor.fetchall() if cursor.description else []


def fetch_one(conn: psycopg.Connection[Any], name: str, **params: Any) -> Row | None:
    rows = fetch_all(conn, name, **params)
    return rows[0] if rows else None


def fetch_value(conn: psycopg.Connection[Any], name: str, **params: Any) -> Any:
    """The first column of the first row (the enqueue path: no dict rows)."""
    with translated_errors():
        row = conn.execute(query(name), params).fetchone()
    return row[0] if row else None


async def fetch_value_async(
    conn: psycopg.AsyncConnection[Any], name: str, **params: Any
) -> Any:
    with translated_errors():
        row = await (await conn.execute(query(name), params)).fetchone()
    return row[0] if row else None


async def fetch_all_async(
    conn: psycopg.AsyncConnection[Any], name: str, **params: Any
) -> list[Row]:
    with translated_errors():
        async with conn.cursor(row_factory=dict_row) as cursor:
            await cursor.execute(query(name), params)
            return await cursor.fetchall() if cursor.description else []


async def fetch_one_async(
    conn: psycopg.AsyncConnection[Any], name: str, **params: Any
) -> Row | None:
    rows = await fetch_all_async(conn, name, **params)
    return rows[0] if rows else None
