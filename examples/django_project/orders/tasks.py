"""Found by pgjobs.contrib.django at start-up (each installed app's tasks.py)."""

import django

from orders.models import Order
from pgjobs.contrib.django import app


@app.task(queue="emails")
def send_confirmation(order_id: int) -> None:
    Order.objects.filter(id=order_id).update(confirmed=True)


@app.task
def notify_warehouse(order_id: int) -> None:
    Order.objects.filter(id=order_id).update(shipped=True)


if django.VERSION >= (6, 0):
    from django.tasks import task

    @task
    def issue_invoice(order_id: int) -> None:  # a django.tasks task
        Order.objects.filter(id=order_id).update(invoiced=True)
