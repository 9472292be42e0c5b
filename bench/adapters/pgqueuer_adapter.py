"""pgqueuer with the settings its README and tools/benchmark.py use: asyncpg
driver, uvloop, PgQueuer app run via `pgqueuer.run` (what `pgq run` does),
default batch_size=10, durable tables."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from importlib import metadata

import psycopg

from bench.adapters.base import TASK_NAME, EnqueueClient, SystemAdapter, Verification
from bench.adapters.procrastinate_adapter import run_seed
from bench.errors import AdapterUnavailable
from bench.recorder import Recorder

VERIFY_SQL = """
SELECT (SELECT count(DISTINCT job_id) FROM pgqueuer_log
         WHERE job_id = ANY(%(ids)s::bigint[])),
       count(*) FILTER (WHERE status = 'successful'),
       count(*) FILTER (WHERE status = 'picked'),
       count(*) FILTER (WHERE status IN ('exception', 'canceled', 'deleted', 'failed'))
         + (SELECT count(*) FROM pgqueuer WHERE id = ANY(%(ids)s::bigint[]))
  FROM pgqueuer_log WHERE job_id = ANY(%(ids)s::bigint[])
"""
PENDING_SQL = """
SELECT count(*) FROM pgqueuer
 WHERE id = ANY(%(ids)s::bigint[]) AND status = 'queued'
"""
WINDOW_SQL = """
SELECT min(created) FILTER (WHERE status = 'picked'),
       max(created) FILTER (WHERE status = 'successful')
  FROM pgqueuer_log WHERE job_id = ANY(%(ids)s::bigint[])
"""
# pgqueuer deletes finished jobs from its queue table; what stays is 3 log rows
# per job (queued, picked, successful) plus aggregated statistics.
SEED_LOG_SQL = """
INSERT INTO pgqueuer_log (job_id, status, entrypoint, priority, aggregated, created)
SELECT g, s.status::pgqueuer_status, %(task)s, 0, true, now() - interval '1 day'
  FROM generate_series(1, %(count)s) AS g
 CROSS JOIN (VALUES ('queued'), ('picked'), ('successful')) AS s(status)
"""
SEED_STATS_SQL = """
INSERT INTO pgqueuer_statistics (created, count, priority, status, entrypoint)
SELECT date_trunc('sec', now() - interval '1 day'), %(count)s, 0,
       s.status::pgqueuer_status, %(task)s
  FROM (VALUES ('queued'), ('picked'), ('successful')) AS s(status)
"""
PRUNE_LOG_SQL = """
WITH deleted AS (DELETE FROM pgqueuer_log RETURNING job_id)
SELECT count(DISTINCT job_id) FROM deleted
"""
# New job ids must not collide with the seeded log rows.
SEED_SEQ_SQL = "SELECT setval(pg_get_serial_sequence('pgqueuer', 'id'), %(count)s + 1)"


def concurrency_settings(concurrency: int) -> tuple[int, int | None, int]:
    """(batch_size, max_concurrent_tasks, entrypoint concurrency_limit) for N.

    0 means pgqueuer's defaults. pgqueuer requires max_concurrent_tasks >=
    2 * batch_size, so N=1 is the entrypoint's own concurrency_limit=1 instead.
    """
    if concurrency == 0:
        return 10, None, 0
    if concurrency == 1:
        return 1, None, 1
    return max(1, min(10, concurrency // 2)), concurrency, 0


class PgqueuerClient(EnqueueClient):
    def __init__(self, queries: object) -> None:
        from pgqueuer.queries import Queries

        assert isinstance(queries, Queries)
        self.queries = queries

    async def enqueue_one(self, n: int) -> int:
        ids = await self.queries.enqueue(TASK_NAME, str(n).encode())
        return int(ids[0])

    async def enqueue_many(self, ns: Sequence[int]) -> list[int]:
        ids = await self.queries.enqueue(
            [TASK_NAME] * len(ns), [str(n).encode() for n in ns], [0] * len(ns)
        )
        return [int(i) for i in ids]


class PgqueuerAdapter(SystemAdapter):
    name = "pgqueuer"

    @property
    def label(self) -> str:
        return f"{self.name} {metadata.version('pgqueuer')}"

    def notes(self) -> list[str]:
        return [
            f"{self.name}: asyncpg + uvloop, PgQueuer via pgqueuer.run, drain mode; "
            "concurrency N = max_concurrent_tasks=N, batch_size=min(10, N/2); "
            "N=1 = entrypoint concurrency_limit=1, batch_size=1; latency worker at "
            "defaults (batch_size=10, unlimited)"
        ]

    def check_available(self) -> None:
        try:
            import asyncpg  # type: ignore[import-untyped]  # noqa: F401
            import pgqueuer  # noqa: F401
            import uvloop  # noqa: F401
        except ImportError as exc:
            raise AdapterUnavailable(
                f"{exc.name} is not installed (pip install 'pgqueuer[asyncpg]' uvloop)"
            ) from exc

    @asynccontextmanager
    async def _queries(self, dsn: str) -> AsyncIterator[object]:
        import asyncpg
        from pgqueuer.db import AsyncpgDriver
        from pgqueuer.queries import Queries

        conn = await asyncpg.connect(dsn)
        try:
            yield Queries(AsyncpgDriver(conn))
        finally:
            await conn.close()

    async def install_schema(self, dsn: str) -> None:
        from pgqueuer.queries import Queries

        async with self._queries(dsn) as queries:
            assert isinstance(queries, Queries)
            await queries.install()

    @asynccontextmanager
    async def client(self, dsn: str) -> AsyncIterator[EnqueueClient]:
        async with self._queries(dsn) as queries:
            yield PgqueuerClient(queries)

    async def pending(self, conn: psycopg.AsyncConnection, ids: Sequence[int]) -> int:
        row = await (await conn.execute(PENDING_SQL, {"ids": list(ids)})).fetchone()
        assert row is not None
        return int(row[0])

    async def verify(
        self, conn: psycopg.AsyncConnection, ids: Sequence[int]
    ) -> Verification:
        row = await (await conn.execute(VERIFY_SQL, {"ids": list(ids)})).fetchone()
        assert row is not None
        total, ok, picked, failed = (int(x) for x in row)
        return Verification(total=total, succeeded=ok, started=picked, failed=failed)

    async def drain_window(
        self, conn: psycopg.AsyncConnection, ids: Sequence[int]
    ) -> tuple[datetime, datetime]:
        row = await (await conn.execute(WINDOW_SQL, {"ids": list(ids)})).fetchone()
        assert row is not None and row[0] is not None and row[1] is not None
        return row[0], row[1]

    async def seed_finished(self, conn: psycopg.AsyncConnection, count: int) -> None:
        await run_seed(
            conn,
            (SEED_LOG_SQL, SEED_STATS_SQL, SEED_SEQ_SQL),
            {"count": count, "task": TASK_NAME},
        )

    async def prune(self, dsn: str) -> int | None:
        # pgqueuer deletes a finished job itself; what a user prunes is its
        # log (3 rows a job): one DELETE, as a cron job would run it.
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            row = await (await conn.execute(PRUNE_LOG_SQL)).fetchone()
        assert row is not None
        return int(row[0])

    def run_worker(
        self, dsn: str, concurrency: int, drain: bool, recorder: Recorder
    ) -> None:
        import asyncpg
        import uvloop
        from pgqueuer import PgQueuer, run
        from pgqueuer.db import AsyncpgDriver
        from pgqueuer.domain.types import QueueExecutionMode
        from pgqueuer.models import Job

        batch_size, max_tasks, limit = concurrency_settings(concurrency)

        @asynccontextmanager
        async def factory() -> AsyncIterator[PgQueuer]:
            conn = await asyncpg.connect(dsn)
            try:
                pgq = PgQueuer(AsyncpgDriver(conn))
                recorder.time_claims(pgq.queries, "dequeue")

                @pgq.entrypoint(TASK_NAME, concurrency_limit=limit)
                async def noop(job: Job) -> None:
                    assert job.payload is not None
                    recorder.record(int(job.payload))

                yield pgq
            finally:
                await conn.close()

        mode = QueueExecutionMode.drain if drain else QueueExecutionMode.continuous
        uvloop.run(
            run(
                factory,
                batch_size=batch_size,
                max_concurrent_tasks=max_tasks,
                mode=mode,
            )
        )
