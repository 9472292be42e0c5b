"""Django's own test runner on a project using pgjobs (``manage.py test orders``):
the test database gets pgjobs' schema from migrate, and the pytest kit's
assertions read Django's connection inside the test's transaction."""

from django.db import connection, transaction
from django.test import TestCase

from orders import tasks
from orders.models import Order
from pgjobs.contrib.django import app
from pgjobs.testing import assert_enqueued, assert_not_enqueued, enqueued_jobs


class PlaceOrderTests(TestCase):
    def test_job_enqueued_with_the_order(self) -> None:
        with transaction.atomic():
            order = Order.objects.create(email="t@example.com")
            tasks.send_confirmation.enqueue(connection, order_id=order.id)
        job = assert_enqueued(connection, tasks.send_confirmation, order_id=order.id)
        self.assertEqual(job.queue_name, "emails")

    def test_rolled_back_block_leaves_no_job(self) -> None:
        try:
            with transaction.atomic():
                app.enqueue(connection, tasks.send_confirmation, {"order_id": 1})
                raise RuntimeError("rolled back")
        except RuntimeError:
            pass
        assert_not_enqueued(connection, tasks.send_confirmation)

    def test_enqueue_many_on_django_connection(self) -> None:
        with transaction.atomic():
            ids = app.enqueue_many(
                connection,
                tasks.send_confirmation,
                [{"order_id": n} for n in (1, 2, 3)],
            )
        jobs = enqueued_jobs(connection, tasks.send_confirmation)
        self.assertEqual([job.id for job in jobs], ids)
        self.assertEqual(
            [job.args for job in jobs], [{"order_id": n} for n in (1, 2, 3)]
        )
