"""Wrong calls: each line marked ``# E`` must be a mypy error."""

import psycopg
from jobs import issue_invoice, send_confirmation, with_context


def place(conn: psycopg.Connection[object]) -> None:
    send_confirmation.enqueue(conn, order_id="1", email="a@example.com")  # E
    send_confirmation.enqueue(conn, order_id=1)  # E
    send_confirmation.enqueue(conn, order_id=1, email="a", urgent=True)  # E
    issue_invoice.enqueue(conn, invoice={"customer_id": 1})  # E
    with_context.enqueue(conn, day=1)  # E
    send_confirmation.defer(order_id=None, email="b@example.com")  # E
