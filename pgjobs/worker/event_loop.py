"""The event loop a worker runs on: uvloop when it is installed, else asyncio.

``pgjobs worker`` (and ``app.run_worker()``) run the worker through
``run()``. uvloop (``pip install 'pgjobs[uvloop]'``) is a drop-in asyncio
loop written on libuv: scheduling the tasks and waking on the sockets is a
part of every job's cost, so it raises a worker's throughput (``make bench``
measures it; figures in bench/README.md). ``PGJOBS_EVENT_LOOP`` chooses:
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
