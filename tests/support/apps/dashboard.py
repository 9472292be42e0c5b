"""An App for the dashboard and event-stream tests (``--app tests.support.apps.dashboard.app``).

``dash.flaky`` fails (for good: no retry) until its marker file exists, with a
hostile error message; ``dash.<script>...`` is a hostile task name.
"""

from __future__ import annotations

import os
import time

from pgjobs import App

EVIL = "<script>alert('pwned')</script>"
EVIL_TASK = "dash." + EVIL


def register(app: App) -> App:
    @app.task(name="dash.flaky")
    def flaky(marker: str, note: str = "") -> None:
        if not os.path.exists(marker):
            raise ValueError(f"{EVIL} marker {marker} is missing")

    @app.task(name="dash.ok")
    def ok(n: int = 0, sleep: float = 0.0) -> None:
        time.sleep(sleep)

    @app.task(name=EVIL_TASK)
    def evil(note: str = "") -> None:
        raise RuntimeError(EVIL)

    return app


app = register(App(worker_defaults={"fetch_job_polling_interval": 0.2}))
