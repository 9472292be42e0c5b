"""The one module that runs pgjobs' own SQL.

Statements live in ``sql/queries/*.sql`` under ``-- name: <query> --`` headers
(procrastinate's format) and are loaded once. Callers pass a psycopg
connection they own (so the statement joins their transaction) and get rows
as dicts; database errors are translated to pgjobs exceptions here.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, LiteralString

import psycopg
from psycopg.rows import dict_row

from pgjobs import resources
from pgjobs.errors import DatabaseUnavailable, SchemaError

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


@contextmanager
def translated_errors() -> Iterator[None]:
    try:
        yield
    except psycopg.errors.UndefinedTable as exc:
        raise SchemaError(
            f"pgjobs schema is missing or outdated (run `pgjobs db upgrade`): "
            f"{str(exc).splitlines()[0]}"
        ) from None
    except psycopg.errors.UndefinedFunction as exc:
        raise SchemaError(
            f"pgjobs schema is missing or outdated (run `pgjobs db upgrade`): "
            f"{str(exc).splitlines()[0]}"
        ) from None
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise DatabaseUnavailable(
            f"database connection lost: {str(exc).strip().splitlines()[0]}"
        ) from None


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
