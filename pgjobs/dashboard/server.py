"""``pgjobs dashboard``: the dashboard served by uvicorn."""

from __future__ import annotations

from collections.abc import Callable

from pgjobs.dashboard import security
from pgjobs.dashboard.app import create_app
from pgjobs.db import connections
from pgjobs.settings import Settings


def serve(
    settings: Settings,
    *,
    host: str,
    port: int,
    read_only: bool,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve until interrupted; refuses a non-local address without a password."""
    import uvicorn

    password = settings.dashboard_password
    security.check_bind(host, password.get_secret_value() if password else None)
    connections.connect(settings).close()  # unreachable database: one clear line
    app = create_app(settings, read_only=read_only)
    announce(f"http://{host}:{port}/")
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=2,
    )
