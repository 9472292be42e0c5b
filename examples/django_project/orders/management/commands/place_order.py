"""``manage.py place_order EMAIL [--fail]``: an order and its jobs in one atomic()."""

import django
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from orders import tasks
from orders.models import Order
from pgjobs.contrib.django import app


class Command(BaseCommand):
    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--fail", action="store_true", help="raise before commit")

    def handle(self, email, fail, **options):
        try:
            with transaction.atomic():
                order = Order.objects.create(email=email)
                app.enqueue(connection, tasks.send_confirmation, {"order_id": order.id})
                tasks.notify_warehouse.defer(order_id=order.id)  # procrastinate's API
                if django.VERSION >= (6, 0):
                    tasks.issue_invoice.enqueue(order_id=order.id)  # django.tasks
                if fail:
                    raise RuntimeError("payment declined")
        except RuntimeError as exc:
            raise CommandError(f"order not placed: {exc}") from None
        self.stdout.write(f"order {order.id} placed")
