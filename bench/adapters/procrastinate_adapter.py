"""Stock procrastinate 3.x, with its defaults (PsycopgConnector, LISTEN/NOTIFY,
jobs kept after completion)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from importlib import metadata
from typing import Any

import procrastinate
import psycopg

from bench.adapters.base import TASK_NAME, EnqueueClient, SystemAdapter, Verification
from bench.recorder import Recorder

OnJob = Callable[[int], None]

COUNT_JOBS_SQL = "SELECT count(*) FROM procrastinate_jobs"
VERIFY_SQL = """
SELECT count(*),
       count(*) FILTER (WHERE status = 'succeeded'),
       count(*) FILTER (WHERE status IN ('failed', 'cancelled', 'aborted')),
       (SELECT count(*) FROM procrastinate_events
         WHERE job_id = ANY(%(ids)s::bigint[]) AND type = 'started')
  FROM procrastinate_jobs WHERE id = ANY(%(ids)s::bigint[])
"""
PENDING_SQL = """
SELECT count(*) FROM procrastinate_jobs
 WHERE id = ANY(%(ids)s::bigint[]) AND status = 'todo'
"""
WINDOW_SQL = """
SELECT min(at) FILTER (WHERE type = 'started'),
       max(at) FILTER (WHERE type = 'succeeded')
  FROM procrastinate_events WHERE job_id = ANY(%(ids)s::bigint[])
"""
# Finished jobs as a real worker leaves them: the job row plus 3 events.
SEED_JOBS_SQL = """
INSERT INTO procrastinate_jobs (queue_name, task_name, args, status, attempts)
SELECT 'default', %(task)s, jsonb_build_object('n', -g), 'succeeded', 1
  FROM generate_series(1, %(count)s) AS g
"""
SEED_EVENTS_SQL = """
INSERT INTO procrastinate_events (job_id, type, at)
SELECT j.id, e.type::procrastinate_job_event_type, now() - interval '1 day' + e.off
  FROM procrastinate_jobs AS j
 CROSS JOIN (VALUES ('deferred', interval '0'), ('started', interval '1 ms'),
                    ('succeeded', interval '2 ms')) AS e(type, off)
 WHERE j.status = 'succeeded'
"""


async def run_seed(
    conn: psycopg.AsyncConnection, statements: Sequence[str], params: dict[str, Any]
) -> None:
    """Run seeding statements with triggers/FK checks off (superuser only)."""
    async with conn.transaction():
        try:
            async with conn.transaction():
                await conn.execute("SET LOCAL session_replication_role = replica")
        except psycopg.Error:
            pass  # not superuser: seed with triggers on (slower, same result)
        for statement in statements:
            await conn.execute(statement, params)


class ProcrastinateClient(EnqueueClient):
    def __init__(self, task: Any) -> None:
        self.task = task

    async def enqueue_one(self, n: int) -> int:
        job_id: int = await self.task.defer_async(n=n)
        return job_id

    async def enqueue_many(self, ns: Sequence[int]) -> list[int]:
        ids: list[int] = await self.task.batch_defer_async(*({"n": n} for n in ns))
        return ids


class ProcrastinateAdapter(SystemAdapter):
    name = "procrastinate"
    distribution = "procrastinate"

    @property
    def label(self) -> str:
        return f"{self.name} {metadata.version(self.distribution)}"

    def notes(self) -> list[str]:
        return [
            f"{self.name}: PsycopgConnector, async no-op task, worker defaults "
            "(listen_notify, jobs kept); concurrency N = `--concurrency N`, "
            "drain = `wait=False`; latency worker at default concurrency (1)"
        ]

    def build_app(self, dsn: str, on_job: OnJob | None = None) -> procrastinate.App:
        """The app with the no-op task. Subclasses (pgjobs) override this."""
        app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))
        self.register_task(app, on_job)
        return app

    @staticmethod
    def register_task(app: procrastinate.App, on_job: OnJob | None) -> None:
        @app.task(name=TASK_NAME)
        async def noop(n: int) -> None:
            if on_job is not None:
                on_job(n)

    async def install_schema(self, dsn: str) -> None:
        app = self.build_app(dsn)
        async with app.open_async():
            await app.schema_manager.apply_schema_async()

    @asynccontextmanager
    async def client(self, dsn: str) -> AsyncIterator[EnqueueClient]:
        app = self.build_app(dsn)
        async with app.open_async():
            yield ProcrastinateClient(app.tasks[TASK_NAME])

    async def pending(self, conn: psycopg.AsyncConnection, ids: Sequence[int]) -> int:
        row = await (await conn.execute(PENDING_SQL, {"ids": list(ids)})).fetchone()
        assert row is not None
        return int(row[0])

    async def verify(
        self, conn: psycopg.AsyncConnection, ids: Sequence[int]
    ) -> Verification:
        cur = await conn.execute(VERIFY_SQL, {"ids": list(ids)})
        row = await cur.fetchone()
        assert row is not None
        total, ok, failed, started = (int(x) for x in row)
        return Verification(total=total, succeeded=ok, started=started, failed=failed)

    async def drain_window(
        self, conn: psycopg.AsyncConnection, ids: Sequence[int]
    ) -> tuple[datetime, datetime]:
        row = await (await conn.execute(WINDOW_SQL, {"ids": list(ids)})).fetchone()
        assert row is not None and row[0] is not None and row[1] is not None
        return row[0], row[1]

    async def seed_finished(self, conn: psycopg.AsyncConnection, count: int) -> None:
        await run_seed(
            conn, (SEED_JOBS_SQL, SEED_EVENTS_SQL), {"count": count, "task": TASK_NAME}
        )

    async def prune(self, dsn: str) -> int | None:
        # procrastinate's retention: JobManager.delete_old_jobs (what its
        # builtin remove_old_jobs task runs), one DELETE.
        app = self.build_app(dsn)
        async with (
            app.open_async(),
            await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn,
        ):
            before = await _count_jobs(conn)
            await asyncio.sleep(0.01)  # finished strictly before NOW()
            await app.job_manager.delete_old_jobs(nb_hours=0)
            return before - await _count_jobs(conn)

    def run_worker(
        self, dsn: str, concurrency: int, drain: bool, recorder: Recorder
    ) -> None:
        # What `procrastinate worker [--concurrency N] [--one-shot]` does.
        app = self.build_app(dsn, recorder.record)
        recorder.time_claims(app.job_manager, "fetch_job", lambda job: int(bool(job)))

        async def main() -> None:
            async with app.open_async():
                if concurrency:
                    await app.run_worker_async(concurrency=concurrency, wait=not drain)
                else:  # 0: the app's default
                    await app.run_worker_async(wait=not drain)

        asyncio.run(main())


async def _count_jobs(conn: psycopg.AsyncConnection) -> int:
    row = await (await conn.execute(COUNT_JOBS_SQL)).fetchone()
    assert row is not None
    return int(row[0])
