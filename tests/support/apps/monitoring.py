"""An App for the monitoring tests (``--app tests.support.apps.monitoring.app``)."""

from __future__ import annotations

from pgjobs import App

app = App()


@app.task(name="monitoring.add", queue="math")
def add(a: int, b: int = 0) -> int:
    return a + b


@app.task(name="monitoring.explode")
def explode(reason: str) -> None:
    raise RuntimeError(reason)
