"""Running workers: ``pgjobs worker`` and the demo use this."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import procrastinate
from procrastinate import exceptions as procrastinate_exceptions

from pgjobs import schema
from pgjobs.app import App
from pgjobs.enqueue import MAX_NAME_LENGTH
from pgjobs.errors import AppNotFound, InvalidJobOptions, SchemaError


def load_app(dotted_path: str) -> App:
    """The App at ``package.module.attribute``; a clear error if it is not one."""
    if "." not in dotted_path:
        raise AppNotFound(
            f"--app must be a dotted path like mypackage.jobs.app, got {dotted_path!r}"
        )
    try:
        app = procrastinate.App.from_path(dotted_path)
    except procrastinate_exceptions.LoadFromPathError as exc:
        raise AppNotFound(f"cannot load app {dotted_path!r}: {exc}") from None
    if not isinstance(app, App):
        raise AppNotFound(
            f"{dotted_path!r} is a procrastinate App, not a pgjobs App: "
            "build it with pgjobs.App()"
        )
    return app


def check_queues(queues: Sequence[str]) -> list[str] | None:
    for queue in queues:
        if not queue or len(queue) > MAX_NAME_LENGTH or "\x00" in queue:
            raise InvalidJobOptions(
                f"queue name must be 1 to {MAX_NAME_LENGTH} characters, "
                f"got {queue!r:.60}"
            )
    return list(queues) or None


def check_schema(app: App) -> None:
    found = schema.current(app.settings)
    expected = schema.head()
    if found != expected:
        raise SchemaError(
            f"database schema is at {found or 'nothing'}, pgjobs needs {expected}: "
            "run `pgjobs db upgrade`"
        )


def run(
    app: App,
    *,
    queues: Sequence[str] = (),
    concurrency: int | None = None,
    prefetch: int | None = None,
    shutdown_grace: float | None = None,
    wait: bool = True,
    name: str | None = None,
) -> None:
    """Run a worker in the foreground until SIGTERM/SIGINT (or empty if not wait).

    On SIGTERM the worker claims nothing new and lets running jobs finish for
    up to ``shutdown_grace`` seconds before aborting them.
    """
    queue_list = check_queues(queues)
    check_schema(app)
    options: dict[str, Any] = {"queues": queue_list, "wait": wait}
    if concurrency is not None:
        options["concurrency"] = concurrency
    if prefetch is not None:
        options["prefetch"] = prefetch
    if shutdown_grace is not None:
        options["shutdown_graceful_timeout"] = shutdown_grace
    if name is not None:
        options["name"] = name
    app.run_worker(**options)
