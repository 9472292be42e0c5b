"""What every dashboard page and action shares: ``Dashboard`` (settings, the
connection pool, the role's rights, CSRF, templates and their filters), one
per ASGI app, found from a request by ``dashboard_of``."""

from __future__ import annotations

import datetime
import json
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jinja2
import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from pgjobs.dashboard import security
from pgjobs.db import connections, queries
from pgjobs.errors import DatabaseUnavailable
from pgjobs.monitoring.views import MonitoringOptions
from pgjobs.settings import Settings

HERE = Path(__file__).resolve().parent
#: Connections the dashboard holds at most (pages, actions; live streams have
#: their own, at most ``MAX_LIVE`` of them).
POOL_SIZE = 4
MAX_LIVE = 20


class Dashboard:
    """What every page and action needs; one per app."""

    def __init__(self, settings: Settings, *, read_only: bool) -> None:
        self.settings = settings
        self.read_only_flag = read_only
        self.options = MonitoringOptions.from_settings(settings)
        self.csrf = security.Csrf()
        self.basic_auth = settings.dashboard_password is not None
        self.live_clients = 0
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        self._lock = threading.Lock()
        self.role = ""
        self.can_write = False
        self.can_read_jobs = False
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.templates.filters.update(
            ago=_ago,
            when=_when,
            seconds=_seconds,
            duration=_duration,
            percent=_percent,
            pretty=_pretty,
        )
        self.templates.globals.update(qs=_query_string)

    @property
    def read_only(self) -> bool:
        """--read-only, or a role that may not change jobs (pgjobs_monitor)."""
        return self.read_only_flag or not self.can_write

    def pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        with self._lock:
            if self._pool is None:
                # No prepared statements unless PGJOBS_PREPARE_THRESHOLD (poolers).
                info, options = connections.options(
                    connections.conninfo(self.settings), self.settings
                )
                pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
                    info,
                    min_size=1,
                    max_size=POOL_SIZE,
                    kwargs={"autocommit": True, "connect_timeout": 10, **options},
                    open=False,
                    name="pgjobs-dashboard",
                )
                try:
                    pool.open(wait=True, timeout=15)
                except PoolTimeout:
                    pool.close()
                    where = connections.describe(self.settings)
                    raise DatabaseUnavailable(
                        f"cannot connect to the database {where}"
                    ) from None
                with pool.connection() as conn:
                    access = queries.fetch_one(conn, "dashboard_access")
                assert access is not None
                self.role = access["role"]
                self.can_write = access["can_write"]
                self.can_read_jobs = access["can_read_jobs"]
                self._pool = pool
            return self._pool

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection, its statements in one transaction bounded by
        ``PGJOBS_DASHBOARD_STATEMENT_TIMEOUT`` (set locally: nothing stays on
        the server connection behind a transaction pooler)."""
        timeout = f"{int(self.settings.dashboard_statement_timeout * 1000)}ms"
        try:
            with self.pool().connection(timeout=10) as conn, conn.transaction():
                queries.fetch_all(
                    conn, "dashboard_set_statement_timeout", timeout=timeout
                )
                yield conn
        except PoolTimeout:
            raise DatabaseUnavailable("no database connection free in time") from None

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

    def render(
        self,
        request: Request,
        template: str,
        status_code: int = 200,
        **context: Any,
    ) -> Response:
        token = request.cookies.get(security.CSRF_COOKIE)
        new_token = None
        if not self.csrf.valid(token):
            token = new_token = self.csrf.new_token()
        html = self.templates.get_template(template).render(
            request=request,
            root=request.scope.get("root_path", ""),
            read_only=self.read_only,
            read_only_reason=_read_only_reason(self),
            csrf_token=token,
            role=self.role,
            live=self.can_read_jobs,
            **context,
        )
        response = HTMLResponse(html, status_code=status_code)
        response.headers["cache-control"] = "no-store"
        if new_token is not None:
            response.set_cookie(
                security.CSRF_COOKIE,
                new_token,
                httponly=True,
                samesite="strict",
                path=request.scope.get("root_path", "") or "/",
            )
        return response


def _read_only_reason(dashboard: Dashboard) -> str | None:
    if dashboard.read_only_flag:
        return "read-only mode"
    if not dashboard.can_write:
        return f"role {dashboard.role} may not change jobs"
    return None


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _ago(value: datetime.datetime | None) -> str:
    if value is None:
        return "never"
    seconds = (_now() - value).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 60:
        text = f"{seconds:.0f} s"
    elif seconds < 3600:
        text = f"{seconds / 60:.0f} min"
    elif seconds < 86400:
        text = f"{seconds / 3600:.1f} h"
    else:
        text = f"{seconds / 86400:.1f} d"
    return f"in {text}" if future else f"{text} ago"


def _when(value: datetime.datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.1f} s"


def _duration(value: datetime.timedelta | None) -> str:
    if value is None:
        return ""
    seconds = value.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:g} s"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def _query_string(base: dict[str, Any] | None = None, **values: Any) -> str:
    """A URL query of the non-empty values (escaped by the template)."""
    merged = {**(base or {}), **values}
    return urllib.parse.urlencode({k: v for k, v in merged.items() if v})


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.1f}%"


def dashboard_of(request: Request) -> Dashboard:
    found: Dashboard = request.app.state.dashboard
    return found
