"""Calls to a partner API that allows 10 requests per second overall and 5
concurrent requests per tenant, whatever the number of workers.

The limits are declared on the task and enforced by every worker's claim, in
PostgreSQL: jobs held back stay queued and start as soon as the limit allows
(the worker sleeps until then; no polling). A tenant with a big backlog does
not hold back the others: their jobs start beside it.

    python -m examples.third_party_api_limits
    pgjobs limits list                       # declared, runtime, in use now
    pgjobs limits set examples.call_partner_api --rate 20/s   # at runtime
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time

from pgjobs import App, database, get_job, schema

app = App()

CALL_SECONDS = 0.3  # how long the partner takes to answer
starts: list[float] = []
running: collections.Counter[str] = collections.Counter()
most_running: collections.Counter[str] = collections.Counter()


@app.task(
    name="examples.call_partner_api",
    rate_limit="10/s",  # the partner's overall quota
    limit_key="tenant_id",
    key_concurrency_limit=5,  # and its per-tenant concurrency
)
async def call_partner_api(tenant_id: str, request_id: int) -> None:
    starts.append(time.monotonic())
    running[tenant_id] += 1
    most_running[tenant_id] = max(most_running[tenant_id], running[tenant_id])
    try:
        await asyncio.sleep(CALL_SECONDS)  # stands in for the HTTP request
    finally:
        running[tenant_id] -= 1


def most_in_one_second(times: list[float]) -> int:
    times = sorted(times)
    # A job's code starts a few ms after its claim (which the limit counts):
    # 200 ms of slack, far less than a fixed window's burst across its edge.
    return max(
        (len([t for t in times[i:] if t < at + 0.8]) for i, at in enumerate(times)),
        default=0,
    )


async def run_until_done(job_ids: list[int]) -> None:
    async with app.open_async():
        worker = asyncio.create_task(
            app.run_worker_async(concurrency=12, install_signal_handlers=False)
        )
        while True:
            jobs = [await asyncio.to_thread(get_job, app.settings, i) for i in job_ids]
            if all(job.status in ("succeeded", "failed") for job in jobs):
                break
            await asyncio.sleep(0.1)
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)


def main() -> dict[str, object]:
    schema.upgrade(app.settings)
    tenants = ["acme"] * 20 + ["globex"] * 5 + ["initech"] * 5
    with database.connect(app.settings) as conn:
        ids = app.enqueue_many(
            conn,
            call_partner_api,
            [{"tenant_id": t, "request_id": n} for n, t in enumerate(tenants)],
        )
        conn.commit()
    job_ids = [i for i in ids if i is not None]
    began = time.monotonic()
    asyncio.run(run_until_done(job_ids))
    took = time.monotonic() - began
    summary: dict[str, object] = {
        "calls": len(starts),
        "most_per_second": most_in_one_second(starts),
        "most_concurrent_per_tenant": dict(most_running),
    }
    print(
        f"{len(starts)} calls in {took:.1f} s; at most"
        f" {summary['most_per_second']} started in any 0.8 s window (limit 10/s);"
        f" at most {max(most_running.values())} at once for one tenant (limit 5)"
    )
    for tenant, most in sorted(most_running.items()):
        print(f"  {tenant}: at most {most} at once")
    return summary


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    main()
