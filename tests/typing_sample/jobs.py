"""Tasks for the mypy samples (tests/enqueueing/test_typed_enqueue.py)."""

from procrastinate import JobContext
from pydantic import BaseModel

from pgjobs import App

app = App()


class Invoice(BaseModel):
    customer_id: int
    cents: int


@app.task(queue="emails")
def send_confirmation(order_id: int, email: str) -> None: ...


@app.task
def issue_invoice(invoice: Invoice) -> None: ...


@app.task(pass_context=True)
def with_context(context: JobContext, day: str) -> None: ...
