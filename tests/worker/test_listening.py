"""The LISTEN/NOTIFY probe (pgjobs.worker.listening) when connections die.

A worker decides once whether LISTEN reaches it; a connection terminated
during that probe (a failover, ``pg_terminate_backend``, a pooler restart)
fails the probe and the worker's listener retries it. The failure must not
leave a read behind whose exception nobody retrieves: asyncio logs each one
as an ERROR ("Task exception was never retrieved") that the fault scenarios
count as a worker error.
"""

from __future__ import annotations

import asyncio
import gc
import random
import threading
import time

import psycopg
import pytest

from pgjobs.db.connector import Connector
from pgjobs.settings import Settings
from pgjobs.worker import listening

pytestmark = pytest.mark.timeout(60)


def _terminate_every_client(url: str, stop: threading.Event) -> None:
    with psycopg.connect(url, autocommit=True) as admin:
        while not stop.is_set():
            time.sleep(random.uniform(0.0005, 0.004))
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                "   AND backend_type = 'client backend'"
            )


async def test_a_probe_cut_short_leaves_no_unretrieved_error(db_url: str) -> None:
    reported: list[str] = []
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(
        lambda _loop, context: reported.append(str(context.get("message")))
    )
    connector = Connector(
        Settings(database_url=db_url, _env_file=None)  # type: ignore[call-arg]
    )
    await connector.open_async()
    stop = threading.Event()
    cutter = threading.Thread(target=_terminate_every_client, args=(db_url, stop))
    cutter.start()
    failed = 0
    try:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            try:
                await listening.listen_works(connector)
            except Exception:
                failed += 1
            gc.collect()  # an unretrieved exception is reported when collected
    finally:
        stop.set()
        cutter.join()
        await connector.close_async()
        gc.collect()
        await asyncio.sleep(0.05)
        loop.set_exception_handler(previous)
    assert failed > 100  # the cuts did land in the probe
    assert reported == []
    # Once the cuts stop, the probe works again.
    again = Connector(Settings(database_url=db_url, _env_file=None))  # type: ignore[call-arg]
    await again.open_async()
    try:
        assert await listening.listen_works(again) is True
    finally:
        await again.close_async()
