"""pgjobs.contrib.fastapi: the FastAPI example driven over HTTP (TestClient),
with its lifespan (pgjobs open, an in-process worker) and AsyncSession enqueue."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from types import ModuleType

import pytest
from fastapi.testclient import TestClient

from tests.support import rows, wait_for


@pytest.fixture
def example(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.setenv("PGJOBS_DATABASE_URL", db_url)
    sys.modules.pop("examples.fastapi_app", None)
    yield importlib.import_module("examples.fastapi_app")
    sys.modules.pop("examples.fastapi_app", None)


@pytest.mark.slow
def test_order_and_job_commit_together_and_the_worker_runs_it(
    example: ModuleType, db_url: str
) -> None:
    with TestClient(example.api) as client:
        created = client.post("/orders", json={"email": "a@example.com"})
        assert created.status_code == 201, created.text
        order_id, job_id = created.json()["order_id"], created.json()["job_id"]

        refused = client.post("/orders", json={"email": "nobody"})
        assert refused.status_code == 422
        # The rolled-back request left neither an order nor a job.
        assert rows(db_url, "SELECT id FROM fastapi_orders") == [(order_id,)]
        assert rows(db_url, "SELECT id FROM procrastinate_jobs") == [(job_id,)]

        # The in-process worker (lifespan) runs the committed job.
        wait_for(
            lambda: client.get(f"/orders/{order_id}").json()["confirmed"],
            timeout=20,
            what="the in-process worker to confirm the order",
        )
        job = wait_for(
            lambda: (
                (j := client.get(f"/jobs/{job_id}").json())["status"] == "succeeded"
                and j
            ),
            what="the job's outcome to be written",
        )
        assert job == {
            "status": "succeeded",
            "attempts": 1,
            "task": "examples.fastapi_app.send_confirmation",
        }
    # Shutdown stopped the worker and unregistered it.
    assert rows(db_url, "SELECT count(*) FROM procrastinate_workers") == [(0,)]


async def test_enqueue_async_on_sqlalchemy_async_connection(
    example: ModuleType, db_url: str
) -> None:
    engine = example.engine()
    try:
        async with engine.connect() as conn:  # AsyncConnection, not a session
            await example.jobs.enqueue_async(
                conn, example.send_confirmation, {"order_id": 1}
            )
            await conn.rollback()
        assert rows(db_url, "SELECT count(*) FROM procrastinate_jobs") == [(0,)]
        async with engine.connect() as conn:
            [job_id] = await example.jobs.enqueue_many_async(
                conn, example.send_confirmation, [{"order_id": 2}]
            )
            await conn.commit()
        assert rows(db_url, "SELECT id FROM procrastinate_jobs") == [(job_id,)]
    finally:
        await engine.dispose()
        example._engine = None
