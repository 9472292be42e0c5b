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
import datetime
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
    notify_modes = ("always", "never")

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
        recorder.time_claims(app.job_manager, "fetch_jobs")
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

    async def prune(self, dsn: str) -> int | None:
        # What `pgjobs prune --succeeded-after 0` runs: the admin retention
        # API with its defaults (batches of 1,000, each its own transaction).
        from pgjobs.admin import retention

        await asyncio.sleep(0.01)  # finished strictly before now
        policy = retention.RetentionPolicy(succeeded_after=datetime.timedelta(0))
        result = await asyncio.to_thread(retention.prune, dsn, policy)
        return result.succeeded_jobs


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


class PgjobsCeilingAdapter(PgjobsAdapter):
    """The most pgjobs' schema allows on this box: its claim and finish
    functions (``pgjobs.fetch_jobs``, ``pgjobs.finish_jobs``, the worker's
    named queries) driven from a plain psycopg loop, with no task code and
    no worker around them. As the worker does: up to ``concurrency`` jobs
    in flight, a claim for every free slot, outcomes written in groups on a
    second connection while the next claim runs. Processing only."""

    name = "pgjobs-ceiling"
    scenarios = frozenset({"processing"})

    @property
    def label(self) -> str:
        return f"{PgjobsAdapter.name} {metadata.version(self.distribution)}, SQL only"

    def notes(self) -> list[str]:
        return [
            "pgjobs-ceiling: pgjobs.fetch_jobs / pgjobs.finish_jobs from a plain "
            "psycopg loop (claims for the free slots of `concurrency`, group "
            "finishes on a second connection), no task code: the ceiling of "
            "the schema that `pgjobs worker` runs on"
        ]

    def run_worker(
        self, dsn: str, concurrency: int, drain: bool, recorder: Recorder
    ) -> None:
        asyncio.run(_drive(dsn, concurrency or 10, drain, recorder))


async def _drive(dsn: str, concurrency: int, drain: bool, recorder: Recorder) -> None:
    from psycopg.rows import dict_row

    from pgjobs.db import queries

    claim_sql = queries.query("worker_fetch_jobs")
    finish_sql = queries.query("worker_finish_jobs")
    connect = psycopg.AsyncConnection.connect
    async with (
        await connect(dsn, autocommit=True, row_factory=dict_row) as claim,
        await connect(dsn, autocommit=True) as finish,
    ):
        cursor = await claim.execute(
            "SELECT worker_id FROM procrastinate_register_worker_v1()"
        )
        row = await cursor.fetchone()
        assert row is not None
        worker_id = row["worker_id"]
        pending: list[int] = []
        in_flight = 0
        slot_free = asyncio.Event()
        work = asyncio.Event()

        async def finisher() -> None:
            nonlocal in_flight
            while True:
                await work.wait()
                work.clear()
                while pending:
                    batch = pending[:500]
                    del pending[:500]
                    await finish.execute(
                        finish_sql,
                        {
                            "ids": batch,
                            "statuses": ["succeeded"] * len(batch),
                            "deletes": [False] * len(batch),
                            "started": [],
                            "worker_id": worker_id,
                        },
                    )
                    in_flight -= len(batch)
                    slot_free.set()

        finishing = asyncio.create_task(finisher())
        try:
            while True:
                free = concurrency - in_flight
                if free <= 0:
                    slot_free.clear()
                    await slot_free.wait()
                    continue
                cursor = await claim.execute(
                    claim_sql,
                    {
                        "queues": None,
                        "worker_id": worker_id,
                        "limit": free,
                        "start": None,
                    },
                )
                rows = await cursor.fetchall()
                for job in rows:
                    recorder.record(job["args"]["n"])
                    pending.append(job["id"])
                in_flight += len(rows)
                if rows:
                    work.set()
                    continue
                if drain and in_flight == 0:
                    return
                slot_free.clear()
                if in_flight:
                    await slot_free.wait()
                else:
                    await asyncio.sleep(0.001)
        finally:
            finishing.cancel()
            await claim.execute(
                "SELECT procrastinate_unregister_worker_v1(%s)", (worker_id,)
            )
