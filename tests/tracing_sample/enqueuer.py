"""Process 1: a web request's span enqueues a job (and one with no span)."""

import os

import psycopg
from opentelemetry import trace
from traced_jobs import app, charge, dump, in_memory_exporter

exporter = in_memory_exporter()
with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
    with trace.get_tracer("shop").start_as_current_span("POST /orders"):
        app.enqueue(conn, charge, {"order_id": 1})
    app.enqueue(conn, charge, {"order_id": 2})  # no active span: no context stored
dump(exporter)
