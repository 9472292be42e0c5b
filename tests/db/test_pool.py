"""The worker's pool hands out the connection returned last: one statement
after another goes to the same (warm) backend, not round the whole pool."""

from __future__ import annotations

import asyncio

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
