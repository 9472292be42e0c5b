"""A small user app for the pytest-kit sample (tests/kit_sample/check_kit.py)."""

from __future__ import annotations

import psycopg

from pgjobs import App, RetryPolicy

app = App()


@app.task(queue="emails")
def send_confirmation(order_id: int, email: str) -> None:
    if "@" not in email:
        raise ValueError(f"bad address {email!r}")


@app.task(
    pass_context=True,
    retry=RetryPolicy(max_attempts=3, base_delay=600, jitter="none"),
)
def sync_crm(context: object, customer_id: int) -> None:
    attempts = context.job.attempts  # type: ignore[attr-defined]
    if attempts < 2:  # the first two attempts fail: retried after 10 and 20 min
        raise ConnectionError(f"CRM down (attempt {attempts + 1})")


@app.task(retry=RetryPolicy(max_attempts=2, base_delay=3600))
def always_fails(customer_id: int) -> None:
    raise RuntimeError("permanent trouble")


@app.task
async def close_day(day: str) -> None:
    # A job that enqueues another one: run_jobs runs both.
    await send_confirmation.defer_async(order_id=0, email="boss@shop")


def place_order(conn: psycopg.Connection[object], order_id: int, email: str) -> None:
    """The business code under test: enqueue in the caller's transaction."""
    app.enqueue(conn, send_confirmation, {"order_id": order_id, "email": email})
