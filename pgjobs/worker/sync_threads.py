"""The threads sync tasks run in: daemon threads, so a worker can exit.

procrastinate runs a sync task in the event loop's default executor, whose
threads the interpreter joins at exit (and ``asyncio.run`` waits for them):
a sync job still running when the shutdown grace ended kept the process
alive until the job returned, whatever the grace. pgjobs runs sync tasks in
daemon threads instead (asgiref's ``sync_to_async``, as procrastinate, with
this executor): a job handed back at the end of the grace
(``pgjobs.worker.interruptions``) is abandoned, nothing it returns is written, and
the process exiting ends its thread. Idle threads are reused, and leave after
a minute without work.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast

from asgiref import sync

_P = ParamSpec("_P")
_T = TypeVar("_T")

_Call = tuple[
    "concurrent.futures.Future[Any]",
    Callable[..., Any],
    tuple[Any, ...],
    dict[str, Any],
]


class DaemonThreads(concurrent.futures.Executor):
    """An executor of daemon threads, as many as there are calls at once."""

    def __init__(self, idle_timeout: float = 60.0) -> None:
        self.idle_timeout = idle_timeout
        self._calls: queue.SimpleQueue[_Call] = queue.SimpleQueue()
        # One token per idle thread: a call that takes one needs no new thread.
        self._idle = threading.Semaphore(0)
        self._started = 0

    def submit(
        self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs
    ) -> concurrent.futures.Future[_T]:
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()
        self._calls.put((future, fn, args, kwargs))
        if not self._idle.acquire(blocking=False):
            self._started += 1
            threading.Thread(
                target=self._run, name=f"pgjobs-sync-{self._started}", daemon=True
            ).start()
        return future

    def _run(self) -> None:
        while True:
            try:
                future, fn, args, kwargs = self._calls.get(timeout=self.idle_timeout)
            except queue.Empty:
                if self._idle.acquire(blocking=False):
                    return  # idle for long, and no call counts on this thread
                continue  # a call just counted on this thread: take it
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del future, fn, args, kwargs
            self._idle.release()


_EXECUTOR = DaemonThreads()


async def run_sync(func: Callable[[], _T]) -> _T:
    """``func()`` in a daemon thread (see the module docstring); cancelling
    the caller abandons the thread."""
    # asgiref types its executor as a ThreadPoolExecutor; it only submits.
    executor = cast(concurrent.futures.ThreadPoolExecutor, _EXECUTOR)
    return await sync.sync_to_async(func, thread_sensitive=False, executor=executor)()
