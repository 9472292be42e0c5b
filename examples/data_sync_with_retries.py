"""Data sync with retries: exponential backoff with jitter, transient vs permanent.

Each job syncs one customer from a flaky upstream API. Connection errors and
timeouts are retried with growing, jittered delays; an unknown customer is a
permanent error and goes to the dead letters at once, without burning retries.

    python -m examples.data_sync_with_retries
"""

from __future__ import annotations

import asyncio
import collections
import logging

from pgjobs import App, RetryPolicy, database, dead_letters, get_job, schema

app = App()
log = logging.getLogger("examples.data_sync_with_retries")

calls: collections.Counter[int] = collections.Counter()  # stands in for the API


class UnknownCustomer(Exception):
    """The upstream API answered 404: retrying will not help."""


def fetch_customer(customer_id: int) -> dict[str, object]:
    calls[customer_id] += 1
    if customer_id == 13:
        raise UnknownCustomer(f"customer {customer_id} does not exist upstream")
    if calls[customer_id] <= customer_id % 3:  # the first calls hit a bad moment
        raise ConnectionError("upstream reset the connection")
    return {"id": customer_id, "name": f"Customer {customer_id}"}


@app.task(
    name="examples.sync_customer",
    queue="sync",
    timeout=10,
    retry=RetryPolicy(
        max_attempts=10,  # data sync: patient
        base_delay=0.1,
        factor=2,
        max_delay=2,
        jitter="equal",
        retry_on=(ConnectionError, TimeoutError),
        give_up_on=(UnknownCustomer,),
    ),
)
def sync_customer(customer_id: int) -> None:
    customer = fetch_customer(customer_id)
    log.info("synced %s", customer["name"])  # upsert into your own table here


async def run_until_done(job_ids: list[int]) -> None:
    """Run a worker until every job has succeeded or failed for good."""
    async with app.open_async():
        worker = asyncio.create_task(
            app.run_worker_async(
                queues=["sync"],
                install_signal_handlers=False,
                fetch_job_polling_interval=0.1,
            )
        )
        while True:
            jobs = [await asyncio.to_thread(get_job, app.settings, i) for i in job_ids]
            if all(job.status in ("succeeded", "failed") for job in jobs):
                break
            await asyncio.sleep(0.2)
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)


def main() -> dict[str, str]:
    schema.upgrade(app.settings)
    with database.connect(app.settings) as conn:
        ids = [
            app.enqueue(conn, sync_customer, {"customer_id": n}) for n in (1, 2, 5, 13)
        ]
        conn.commit()
    asyncio.run(run_until_done(ids))
    outcome = {}
    for job_id in ids:
        job = get_job(app.settings, job_id)
        delays = [
            f"{(later.failed_at - earlier.failed_at).total_seconds():.2f}s"
            for earlier, later in zip(job.errors, job.errors[1:], strict=False)
        ]
        print(
            f"job {job.id} customer {job.args['customer_id']}: {job.status} after "
            f"{job.attempts} attempt(s); errors: "
            f"{[e.error_type for e in job.errors]}; gaps between failures: {delays}"
        )
        outcome[str(job.args["customer_id"])] = job.status
    letters = dead_letters.list_dead_letters(app.settings, task=sync_customer.name)
    for letter in letters:
        print(f"dead letter {letter.id}: {letter.error_type}: {letter.error_message}")
    return outcome


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    logging.getLogger("procrastinate").setLevel(logging.CRITICAL)  # tracebacks
    main()
