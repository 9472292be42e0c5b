"""Running workers: ``pgjobs worker`` and the demo use this."""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from types import ModuleType
from typing import Any, NoReturn

import procrastinate

from pgjobs.app import App
from pgjobs.db import connections, queries, schema
from pgjobs.enqueueing.enqueue import MAX_NAME_LENGTH
from pgjobs.errors import AppNotFound, InvalidJobOptions, SchemaError


def load_app(dotted_path: str) -> App:
    """The App at ``package.module.attribute``; a clear error if it is not one."""
    if "." not in dotted_path:
        raise AppNotFound(
            f"--app must be a dotted path like mypackage.jobs.app, got {dotted_path!r}"
        )
    module_name, _, attribute = dotted_path.rpartition(".")
    module = _import(dotted_path, module_name)
    try:
        app = getattr(module, attribute)
    except AttributeError:
        app = _module_instead(dotted_path)
    if not isinstance(app, App):
        kind = (
            "a procrastinate App, not a pgjobs App: build it with pgjobs.App()"
            if isinstance(app, procrastinate.App)
            else f"a {type(app).__name__}, not a pgjobs App"
        )
        raise AppNotFound(f"{dotted_path!r} is {kind}")
    return app


def _import(dotted_path: str, module_name: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not module_name.startswith(exc.name):
            raise AppNotFound(
                f"cannot load app {dotted_path!r}: importing {module_name} failed: "
                f"{exc}"
            ) from None
        raise AppNotFound(
            f"cannot load app {dotted_path!r}: no module named {exc.name!r} "
            f"importable from {os.getcwd()} (run from the folder that holds "
            f"{module_name.split('.')[0]!r}, or add that folder to PYTHONPATH)"
        ) from None
    except Exception as exc:  # the user's module fails at import
        raise AppNotFound(
            f"cannot load app {dotted_path!r}: importing {module_name} raised "
            f"{type(exc).__name__}: {exc}"
        ) from None


def _module_instead(dotted_path: str) -> NoReturn:
    """The error for a path that names no attribute: a module, or nothing."""
    module_name = dotted_path.rpartition(".")[0]
    try:
        module = importlib.import_module(dotted_path)
    except ImportError:
        raise AppNotFound(
            f"cannot load app {dotted_path!r}: module {module_name!r} has no "
            f"attribute {dotted_path.rpartition('.')[2]!r}"
        ) from None
    apps = sorted(
        name for name, value in vars(module).items() if isinstance(value, App)
    )
    hint = (
        f": pass --app {dotted_path}.{apps[0]}"
        if len(apps) == 1
        else ": pass the App inside it, e.g. --app mypackage.jobs.app"
    )
    raise AppNotFound(f"{dotted_path!r} is a module, not an App{hint}")


def check_queues(queues: Sequence[str]) -> list[str] | None:
    for queue in queues:
        if not queue or len(queue) > MAX_NAME_LENGTH or "\x00" in queue:
            raise InvalidJobOptions(
                f"queue name must be 1 to {MAX_NAME_LENGTH} characters, "
                f"got {queue!r:.60}"
            )
    return list(queues) or None


def check_schema(app: App) -> None:
    # Next to a full server, a worker waits for a connection slot.
    found = connections.wait_for_free_slot(lambda: schema.current(app.settings))
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
    up to ``shutdown_grace`` seconds; the jobs still running then go back to
    the queue without counting an attempt (``pgjobs.worker.interruptions``).
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
    # e.g. a read-only server or a role that may not register workers.
    with queries.translated_errors():
        app.run_worker(**options)
