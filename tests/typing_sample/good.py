"""Correct calls: mypy --strict passes."""

import psycopg
from jobs import Invoice, issue_invoice, send_confirmation, with_context
from sqlalchemy.ext.asyncio import AsyncSession


def place(conn: psycopg.Connection[object]) -> int:
    job_id: int = send_confirmation.enqueue(conn, order_id=1, email="a@example.com")
    issue_invoice.enqueue(conn, invoice=Invoice(customer_id=1, cents=100))
    with_context.enqueue(conn, day="2026-12-01")
    send_confirmation.defer(order_id=2, email="b@example.com")
    return job_id


async def place_async(session: AsyncSession) -> int:
    return await send_confirmation.enqueue_async(session, order_id=3, email="c@x.org")
