"""The dashboard's ASGI app: ``create_app(settings, read_only=...)``.

Pages are plain functions in ``pages.py`` and actions in ``actions.py``; they
read and act through pgjobs' admin API (``pgjobs.jobs``, ``dead_letters``,
``breakers``, ``schedules``, ``monitoring``) and the dashboard's own named
queries (``sql/queries/dashboard.sql``) on the small connection pool of
``state.Dashboard``, whose connections carry a ``statement_timeout``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from pgjobs.dashboard import actions, live, pages, security
from pgjobs.dashboard.state import HERE, Dashboard
from pgjobs.settings import Settings


def create_app(
    settings: Settings,
    *,
    read_only: bool = False,
    basic_auth: bool = True,
) -> Starlette:
    """The dashboard as an ASGI app.

    ``read_only`` hides every action and job argument and refuses every POST
    (a role without UPDATE on the jobs, such as ``pgjobs_monitor``, is
    read-only whatever this says). With ``basic_auth`` (default) and
    ``PGJOBS_DASHBOARD_PASSWORD`` set, every request needs HTTP basic auth;
    pass ``basic_auth=False`` when your own app authenticates (its
    ``request.user`` is then the audit trail's actor).
    """
    dashboard = Dashboard(settings, read_only=read_only)
    if not basic_auth:
        dashboard.basic_auth = False
    routes: list[Route | Mount] = [
        *pages.routes(),
        *actions.routes(),
        Route("/live", live.endpoint),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        dashboard.close()

    app = Starlette(
        routes=routes,
        exception_handlers=pages.exception_handlers(),
        lifespan=lifespan,
        max_body_size=64 * 1024,
    )
    app.state.dashboard = dashboard
    password = settings.dashboard_password
    if dashboard.basic_auth and password is not None:
        app.add_middleware(
            security.Guard,
            username=settings.dashboard_username,
            password=password.get_secret_value(),
        )
    else:
        app.add_middleware(security.Guard, username=None, password=None)
    return app
