"""The event loop a worker runs on: uvloop when it is installed, else asyncio.

``pgjobs worker`` (and ``app.run_worker()``) run the worker through
``run()``. uvloop (``pip install 'pgjobs[uvloop]'``) is a drop-in asyncio
loop written on libuv; measured with ``make bench`` on 2 cores, it raised a
worker's no-op throughput by 11-14% (concurrency 10: 4,019 → 4,467 jobs/s;
concurrency 50: 7,331 → 8,346), since scheduling the tasks and waking on
the sockets is a part of every job's cost. ``PGJOBS_EVENT_LOOP`` chooses:
``auto`` (uvloop if importable), ``uvloop`` (an error if it is not) or
``asyncio``.

``procrastinate --app=... worker`` builds its own asyncio loop: it gets the
batched hot path, not uvloop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

from pgjobs.errors import ConfigError

T = TypeVar("T")
Choice = Literal["auto", "uvloop", "asyncio"]
Loop = Literal["uvloop", "asyncio"]


def name(choice: Choice) -> Loop:
    """The loop ``run(..., choice)`` would use: ``uvloop`` or ``asyncio``."""
    if choice == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if choice == "uvloop":
            raise ConfigError(
                "PGJOBS_EVENT_LOOP is uvloop but uvloop is not installed: "
                "pip install 'pgjobs[uvloop]'"
            ) from None
        return "asyncio"
    return "uvloop"


def run(main: Callable[[], Coroutine[Any, Any, T]], choice: Choice = "auto") -> T:
    """Run ``main()`` to completion on a new loop of the chosen kind."""
    if name(choice) == "uvloop":
        import uvloop

        return uvloop.run(main())
    return asyncio.run(main())
