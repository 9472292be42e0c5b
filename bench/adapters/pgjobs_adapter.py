"""pgjobs: procrastinate's worker with pgjobs' App, as a user runs it.

The default ``pgjobs.App``: typed payloads, error history, dead letters,
breakers and timeouts middleware, stalled-job rescue and the schedules
ticker are all on; the schema is pgjobs' alembic head. Enqueueing goes
through ``app.enqueue_async`` / ``app.enqueue_many_async`` on one psycopg
connection, as application code does. Jobs, events and the SQL probes are
procrastinate's tables, so the procrastinate adapter's checks apply as is.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from importlib import metadata
from typing import Any

import psycopg

from bench.adapters.base import TASK_NAME, EnqueueClient
from bench.adapters.procrastinate_adapter import OnJob, ProcrastinateAdapter
from bench.recorder import Recorder
from pgjobs.worker import event_loop


class PgjobsClient(EnqueueClient):
    def __init__(self, app: Any, conn: psycopg.AsyncConnection[Any]) -> None:
        self.app = app
        self.conn = conn

    async def enqueue_one(self, n: int) -> int:
        # autocommit: each enqueue is its own transaction, like `defer`.
        job_id: int = await self.app.enqueue_async(self.conn, TASK_NAME, {"n": n})
        return job_id

    async def enqueue_many(self, ns: Sequence[int]) -> list[int]:
        ids: list[int] = await self.app.enqueue_many_async(
            self.conn, TASK_NAME, [{"n": n} for n in ns]
        )
        return ids


class PgjobsAdapter(ProcrastinateAdapter):
    name = "pgjobs"
    distribution = "pgjobs"

    def notes(self) -> list[str]:
        return [
            "pgjobs: default pgjobs.App (payload validation, error history, dead "
            "letters, breaker/timeout middleware, stalled rescue, schedules "
            "ticker on); enqueue via app.enqueue_async on one autocommit "
            "connection; worker = pgjobs' procrastinate Worker subclass "
            "(batch claim, group finish), run like `pgjobs worker` on the "
            f"{event_loop.name('auto')} event loop (pgjobs[uvloop] installed); "
            "latency worker at default concurrency (10)"
        ]

    def run_worker(
        self, dsn: str, concurrency: int, drain: bool, recorder: Recorder
    ) -> None:
        # What `pgjobs worker [--concurrency N] [--one-shot]` does: the
        # procrastinate adapter's worker, on the loop pgjobs picks.
        app = self.build_app(dsn, recorder.record)
        options: dict[str, Any] = {
            "wait": not drain,
            **self.worker_options(concurrency),
        }
        if concurrency:
            options["concurrency"] = concurrency
        app.run_worker(**options)

    def worker_options(self, concurrency: int) -> dict[str, Any]:
        return {}

    def build_app(self, dsn: str, on_job: OnJob | None = None) -> Any:
        from pgjobs import App, Settings

        app = App(settings=Settings(database_url=dsn, _env_file=None))  # type: ignore[call-arg]
        self.register_task(app, on_job)
        return app

    async def install_schema(self, dsn: str) -> None:
        from pgjobs.db import schema

        await asyncio.to_thread(schema.upgrade, dsn)

    @asynccontextmanager
    async def client(self, dsn: str) -> AsyncIterator[EnqueueClient]:
        app = self.build_app(dsn)
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            yield PgjobsClient(app, conn)


class PgjobsPrefetchAdapter(PgjobsAdapter):
    """pgjobs with its opt-in prefetch: one batch claimed ahead (prefetch =
    concurrency), as `pgjobs worker -c N --prefetch N`. Processing only: the
    enqueue path and the idle-worker latency are pgjobs' own."""

    name = "pgjobs-prefetch"
    scenarios = frozenset({"processing"})

    @property
    def label(self) -> str:
        return (
            f"{PgjobsAdapter.name} {metadata.version(self.distribution)}, prefetch = c"
        )

    def notes(self) -> list[str]:
        return [
            "pgjobs-prefetch: the same App and worker with PGJOBS_PREFETCH = the "
            "concurrency (opt-in, off by default): jobs claimed beyond the free "
            "slots wait in the worker and start as slots free"
        ]

    def worker_options(self, concurrency: int) -> dict[str, Any]:
        return {"prefetch": concurrency or 10}
