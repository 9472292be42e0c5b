"""The operator's dashboard: server-rendered pages over pgjobs' views, with actions.

``pgjobs dashboard`` serves it with uvicorn; ``create_app(settings)`` returns
the ASGI app to mount in your own Starlette/FastAPI app behind your own auth
(``pip install 'pgjobs[dashboard]'``)::

    from pgjobs.dashboard import create_app
    app.mount("/jobs-admin", create_app(settings, read_only=True))
"""

from __future__ import annotations

from pgjobs.dashboard.app import create_app

__all__ = ["create_app"]
