"""``pgjobs demo``: the transactional enqueue, end to end, in one command.

Migrates the database, places orders whose confirmation jobs are enqueued in
the same transaction (and one that rolls back, leaving no job), bulk-enqueues
a thousand jobs, refuses a bad payload, runs a worker until the queue is
empty and prints what happened.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pgjobs.app import App
from pgjobs.db import connections, queries, schema
from pgjobs.errors import InvalidPayload
from pgjobs.settings import Settings

QUEUE = "pgjobs-demo"


def build_app(settings: Settings) -> App:
    app = App(settings=settings)

    @app.task(name="demo.send_order_confirmation", queue=QUEUE)
    def send_order_confirmation(order_id: int) -> None:
        with connections.connect(settings) as conn:
            queries.fetch_all(conn, "demo_confirm_order", order_id=order_id)

    @app.task(name="demo.make_thumbnail", queue=QUEUE)
    def make_thumbnail(image_id: int, size: int = 128) -> None:
        pass

    return app


def run(settings: Settings, echo: Callable[[str], None] = print) -> dict[str, int]:
    echo(f"database: {connections.describe(settings)}")
    schema.upgrade(settings)
    echo(f"schema: at revision {schema.current(settings)}")
    app = build_app(settings)
    confirm = app.tasks["demo.send_order_confirmation"]
    job_ids: list[int | None] = []
    order_ids: list[int] = []

    with connections.connect(settings) as conn:
        queries.fetch_all(conn, "demo_create_orders")
        conn.commit()
        for customer in ("ada", "grace", "linus"):
            with conn.transaction():
                row = queries.fetch_one(conn, "demo_insert_order", customer=customer)
                assert row is not None
                order_ids.append(row["id"])
                job_ids.append(app.enqueue(conn, confirm, {"order_id": row["id"]}))
        echo(f"committed 3 orders, each with its confirmation job: jobs {job_ids}")

        class Rollback(Exception):
            pass

        try:
            with conn.transaction():
                row = queries.fetch_one(conn, "demo_insert_order", customer="mallory")
                assert row is not None
                rolled_back_order = row["id"]
                app.enqueue(conn, confirm, {"order_id": rolled_back_order})
                raise Rollback
        except Rollback:
            pass
        order_ids.append(rolled_back_order)
        echo(f"rolled back order {rolled_back_order} and its job: nothing was written")

        try:
            with conn.transaction():
                app.enqueue(conn, confirm, {"order_id": "not-a-number"})
        except InvalidPayload as exc:
            echo(f"refused at enqueue: {exc}")

        started = time.perf_counter()
        with conn.transaction():
            bulk = app.enqueue_many(
                conn, "demo.make_thumbnail", [{"image_id": i} for i in range(1000)]
            )
        elapsed = time.perf_counter() - started
        echo(f"bulk-enqueued {len(bulk)} jobs in one round trip ({elapsed:.3f} s)")
        job_ids.extend(bulk)

    echo("running a worker until the demo queue is empty...")
    started = time.perf_counter()
    app.run_worker(
        queues=[QUEUE], wait=False, concurrency=10, install_signal_handlers=False
    )
    echo(f"worker done in {time.perf_counter() - started:.1f} s")

    with connections.connect(settings) as conn:
        counts = {
            row["status"]: row["jobs"]
            for row in queries.fetch_all(conn, "jobs_status_counts", ids=job_ids)
        }
        summary = queries.fetch_all(
            conn, "demo_order_summary", task_name=confirm.name, order_ids=order_ids
        )
    echo("jobs by state: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    for order in summary:
        state = "confirmed" if order["confirmed"] else "not confirmed"
        jobs = order["jobs"]
        echo(f"  order {order['id']} ({order['customer']}): {state}, {jobs} job(s)")
    return counts
