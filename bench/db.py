"""Scratch databases: one fresh database per system per measured run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import quote, urlencode

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict


def scratch_dsn(base: str, dbname: str) -> str:
    """`base` (URL or key=value conninfo) pointed at `dbname`, as a URL
    (understood by psycopg, asyncpg and procrastinate alike)."""
    params = {k: str(v) for k, v in conninfo_to_dict(base).items() if v is not None}
    params.pop("dbname", None)
    user = params.pop("user", "")
    password = params.pop("password", "")
    host = params.pop("host", "")
    port = params.pop("port", "")
    auth = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
    netloc = ""
    if host and not host.startswith("/"):
        netloc = host + (f":{port}" if port else "")
    else:
        if host:
            params["host"] = host
        if port:
            params["port"] = port
    if auth:
        netloc = f"{auth}@{netloc}"
    query = ("?" + urlencode(params)) if params else ""
    return f"postgresql://{netloc}/{quote(dbname, safe='')}{query}"


async def connect(dsn: str) -> psycopg.AsyncConnection:
    return await psycopg.AsyncConnection.connect(dsn, autocommit=True)


async def _drop(admin: psycopg.AsyncConnection, name: str) -> None:
    await admin.execute(
        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    )


@asynccontextmanager
async def scratch_database(admin_dsn: str, name: str) -> AsyncIterator[str]:
    """Create an empty database `name` (dropping any leftover), yield its DSN,
    drop it afterwards."""
    async with await connect(admin_dsn) as admin:
        await _drop(admin, name)
        await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield scratch_dsn(admin_dsn, name)
    finally:
        async with await connect(admin_dsn) as admin:
            await _drop(admin, name)


async def analyze(dsn: str, vacuum: bool = False) -> None:
    async with await connect(dsn) as conn:
        await conn.execute("VACUUM ANALYZE" if vacuum else "ANALYZE")


async def server_version(dsn: str) -> str:
    async with await connect(dsn) as conn:
        row = await (await conn.execute("SHOW server_version")).fetchone()
        return str(row[0]) if row else "?"


async def set_database_setting(admin_dsn: str, name: str, key: str, value: str) -> None:
    """ALTER DATABASE name SET key = value: sessions opened from now on see it."""
    async with await connect(admin_dsn) as admin:
        await admin.execute(
            sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                sql.Identifier(name), sql.Identifier(key), sql.Literal(value)
            )
        )
