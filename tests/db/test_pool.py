"""The worker's pool hands out the connection returned last: one statement
after another goes to the same (warm) backend, not round the whole pool."""

from __future__ import annotations

import asyncio
import contextlib

from pgjobs.db.connector import Connector
from pgjobs.settings import Settings


async def test_statements_one_after_another_reuse_the_last_backend(
    settings: Settings,
) -> None:
    connector = Connector(settings, min_size=4, max_size=4)
    await connector.open_async()
    try:
        pool = connector.pool
        await pool.wait(timeout=30)
        # Four backends at once, so the pool holds four distinct connections.
        async with asyncio.TaskGroup() as group:
            held = [
                group.create_task(
                    connector.execute_query_one_async(
                        "SELECT pg_backend_pid() AS pid, pg_sleep(0.2)"
                    )
                )
                for _ in range(4)
            ]
        assert len({task.result()["pid"] for task in held}) == 4
        pids = [
            (await connector.execute_query_one_async("SELECT pg_backend_pid() AS pid"))[
                "pid"
            ]
            for _ in range(8)
        ]
        assert len(set(pids)) == 1, pids
        assert pool.get_stats()["pool_available"] == 4
    finally:
        await connector.close_async()


async def test_a_listening_worker_claims_with_a_prepared_statement(
    settings: Settings,
) -> None:
    """Where LISTEN works on the pool's database (sessions of their own) the
    worker's claims are server-side prepared statements: the jobs run, and
    the backend that claimed them holds the claim among its prepared
    statements. Other statements stay unprepared."""
    from pgjobs import App

    app = App(settings=settings)
    ran: list[int] = []

    @app.task(name="tests.prepared_claims.record")
    async def record(n: int) -> None:
        ran.append(n)

    async with app.open_async():
        worker = asyncio.create_task(
            app.run_worker_async(concurrency=2, install_signal_handlers=False)
        )
        try:
            async with asyncio.timeout(30):
                while not app.job_manager.prepared_claims:
                    await asyncio.sleep(0.05)
                for n in range(3):
                    await record.defer_async(n=n)
                while len(ran) < 3:
                    await asyncio.sleep(0.05)
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        assert sorted(ran) == [0, 1, 2]
        # Every connection of the pool, at once (the worker has stopped).
        pool = app.connector.pool
        held = [await pool.getconn() for _ in range(pool.get_stats()["pool_size"])]
        try:
            texts = [
                row[0]
                for conn in held
                for row in await (
                    await conn.execute("SELECT statement FROM pg_prepared_statements")
                ).fetchall()
            ]
        finally:
            for conn in held:
                await pool.putconn(conn)
    assert any("pgjobs.fetch_jobs" in text for text in texts), texts
    assert not any("finish_jobs" in text for text in texts), texts
