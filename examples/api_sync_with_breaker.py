"""External-API sync behind a circuit breaker shared by all workers.

The shipping API is down for a while. After 3 failures the breaker opens:
the other jobs are put back in the queue for when it may close, without
running, failing or burning attempts. When the recovery window is over, one
trial call goes through (half-open); it succeeds and the breaker closes.

    python -m examples.api_sync_with_breaker
    psql -c 'SELECT name, state, failure_count, reopens_at FROM pgjobs.breakers'
"""

from __future__ import annotations

import asyncio
import logging
import time

from pgjobs import App, RetryPolicy, breakers, database, get_job, schema

app = App()
app.breaker("shipping-api", failure_threshold=3, recovery_window=1.0)

OUTAGE_SECONDS = 1.5  # stands in for the real outage, from the first call on
api_down_until: float | None = None
api_calls = 0


def post_shipment(order_id: int) -> None:
    global api_calls, api_down_until
    api_calls += 1
    if api_down_until is None:
        api_down_until = time.monotonic() + OUTAGE_SECONDS
    if time.monotonic() < api_down_until:
        raise ConnectionError("shipping API: 503 Service Unavailable")


@app.task(
    name="examples.push_shipment",
    queue="shipping",
    breaker="shipping-api",
    retry=RetryPolicy(max_attempts=5, base_delay=0.2, retry_on=(ConnectionError,)),
)
def push_shipment(order_id: int) -> None:
    post_shipment(order_id)


async def run_until_done(job_ids: list[int]) -> None:
    """Run a worker (printing the breaker's changes) until every job is final."""
    async with app.open_async():
        worker = asyncio.create_task(
            app.run_worker_async(
                queues=["shipping"],
                # One call at a time against the shipping API (its rate limit).
                # With more, the calls already in flight when the breaker
                # opens still fail: a closed breaker admits every call.
                concurrency=1,
                install_signal_handlers=False,
                fetch_job_polling_interval=0.1,
            )
        )
        seen = None
        while True:
            for breaker in await asyncio.to_thread(
                breakers.list_breakers, app.settings
            ):
                if breaker.state != seen:
                    seen = breaker.state
                    print(f"breaker {breaker.name}: {breaker.state}")
            jobs = [await asyncio.to_thread(get_job, app.settings, i) for i in job_ids]
            if all(job.status in ("succeeded", "failed") for job in jobs):
                break
            await asyncio.sleep(0.05)
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)


def main() -> dict[str, int]:
    schema.upgrade(app.settings)
    with database.connect(app.settings) as conn:
        ids = app.enqueue_many(conn, push_shipment, [{"order_id": n} for n in range(8)])
        conn.commit()
    job_ids = [i for i in ids if i is not None]
    asyncio.run(run_until_done(job_ids))
    jobs = [get_job(app.settings, i) for i in job_ids]
    summary = {
        "succeeded": sum(job.status == "succeeded" for job in jobs),
        "failed": sum(job.status == "failed" for job in jobs),
        "api_calls": api_calls,
        "failed_attempts": sum(len(job.errors) for job in jobs),
    }
    print(
        f"{summary['succeeded']} shipments pushed, {summary['failed']} failed; "
        f"{summary['api_calls']} API calls, {summary['failed_attempts']} failed "
        "attempts (the open breaker spared the rest)"
    )
    return summary


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    logging.getLogger("procrastinate").setLevel(logging.CRITICAL)  # tracebacks
    main()
