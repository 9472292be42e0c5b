"""A procrastinate-style app built as a ``pgjobs.App``, for the compatibility
suite (``tests/test_procrastinate_compat.py``) and for the ``procrastinate``
CLI run in subprocesses (``--app tests.support.apps.compat.app``).

Tasks record each run in ``compat_runs`` when a database URL is known, and
in ``RUNS`` (this process) always, so the in-memory tests can see them too.
"""

from __future__ import annotations

import json
import time
from typing import Any

import psycopg

from pgjobs import App, Settings

RUNS: list[tuple[str, Any]] = []

RUNS_TABLE = """
CREATE TABLE IF NOT EXISTS compat_runs (
    id bigserial PRIMARY KEY,
    task text NOT NULL,
    value jsonb,
    started_at timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""


class Param:
    """A plain class (no pydantic schema), as procrastinate users annotate."""

    def __init__(self, x: int) -> None:
        self.x = x

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Param) and other.x == self.x

    def __hash__(self) -> int:
        return hash(self.x)


def dumps(value: Any) -> str:
    """A connector ``json_dumps`` that knows ``Param``."""
    return json.dumps(
        value, default=lambda v: {"__param__": v.x} if isinstance(v, Param) else v
    )


def loads(text: str | bytes) -> Any:
    """A connector ``json_loads`` that turns them back into ``Param``."""
    return json.loads(
        text,
        object_hook=lambda d: Param(d["__param__"]) if set(d) == {"__param__"} else d,
    )


def build(
    settings: Settings | None = None, *, periodic: bool = False, **app_options: Any
) -> App:
    """A fresh App with the suite's tasks (one per test: tasks bind to it);
    ``periodic``: with a procrastinate periodic task ticking every second."""
    app = App(settings=settings, **app_options)

    def record(task: str, value: Any, started: float) -> None:
        RUNS.append((task, value))
        url = app.settings.database_url
        if url:
            with psycopg.connect(url) as conn:
                conn.execute(
                    "INSERT INTO compat_runs (task, value, started_at) "
                    "VALUES (%s, %s, to_timestamp(%s))",
                    (task, json.dumps(value), started),
                )

    @app.task(name="compat.add")
    def add(a: int, b: int = 0) -> int:
        record("compat.add", a + b, time.time())
        return a + b

    @app.task(name="compat.param")
    def param(p: Param) -> None:
        record("compat.param", [type(p).__name__, getattr(p, "x", p)], time.time())

    @app.task(name="compat.untyped")
    def untyped(p):  # type: ignore[no-untyped-def]
        record("compat.untyped", repr(type(p).__name__), time.time())

    @app.task(name="compat.sleep")
    def sleep(seconds: float) -> None:
        started = time.time()
        time.sleep(seconds)
        record("compat.sleep", seconds, started)

    @app.task(name="compat.fail")
    def fail() -> None:
        raise ValueError("always")

    @app.task(name="compat.locked", queueing_lock="only-one")
    def locked() -> None:
        record("compat.locked", None, time.time())

    if periodic:

        @app.periodic(cron="* * * * * *", periodic_id="every-second")
        @app.task(name="compat.tick")
        def tick(timestamp: int) -> None:
            record("compat.tick", timestamp, time.time())

    return app


#: For ``procrastinate --app tests.support.apps.compat.app`` (PGJOBS_* settings).
app = build()
