"""The tasks docs/schedules.md declares, so its examples run as written
(``--app tests.support.apps.docs.app`` stands for the docs' ``myapp.jobs.app``)."""

from __future__ import annotations

from pgjobs import App, schedules

app = App()


@app.periodic(cron="0 0 * * *")
@app.task(name="cleanup", timeout=600)
def cleanup(timestamp: int) -> None: ...


@schedules.every(app, 15 * 60)
@app.task(name="refresh_prices")
def refresh_prices(timestamp: int) -> None: ...


@schedules.after_start(app, delay=5)
@app.task(name="warm_caches")
def warm_caches() -> None: ...
