"""OpenTelemetry traces from enqueue to run (``pip install 'pgjobs[otel]'``).

At enqueue, when a span is active, its W3C trace context (``traceparent``,
``tracestate``) is stored beside the job in ``pgjobs.job_traces``, in the
caller's transaction: the job's arguments are untouched, so payload
validation and procrastinate's API see nothing new.

In the worker, each attempt is a span ``pgjobs run <task>`` (kind CONSUMER)
with the job id, task, queue, attempt number, outcome and error; it is a
child of the enqueuer's span and carries a link to it. Spans go to the
process's tracer provider: configure the OpenTelemetry SDK (or any
distribution) in the worker as in the web app.

Without ``opentelemetry-api`` installed, or with no tracer provider set in
the worker, all of this is off: nothing stored, no query, no middleware.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from procrastinate import job_context, psycopg_connector, sync_psycopg_connector
from procrastinate import worker as procrastinate_worker

from pgjobs.db import queries
from pgjobs.worker import middleware

try:
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import (
        TraceContextTextMapPropagator,
    )
except ImportError:  # the otel extra is not installed
    available = False
else:
    available = True
    _propagator = TraceContextTextMapPropagator()

TRACER_NAME = "pgjobs"
_SQL_CONNECTORS = (
    psycopg_connector.PsycopgConnector,
    sync_psycopg_connector.SyncPsycopgConnector,
)


def current_context() -> tuple[str, str | None] | None:
    """(traceparent, tracestate) of the active span, or None."""
    if not available:
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    traceparent = carrier.get("traceparent")
    return (traceparent, carrier.get("tracestate")) if traceparent else None


def _params(ids: Sequence[int | None]) -> dict[str, Any] | None:
    found = current_context()
    if found is None or not any(job_id is not None for job_id in ids):
        return None
    return {"ids": list(ids), "traceparent": found[0], "tracestate": found[1]}


def store(conn: psycopg.Connection[Any], ids: Sequence[int | None]) -> None:
    """Store the active span's context for the jobs ``ids`` on ``conn``."""
    params = _params(ids)
    if params is not None:
        queries.fetch_all(conn, "tracing_store", **params)


async def store_async(
    conn: psycopg.AsyncConnection[Any], ids: Sequence[int | None]
) -> None:
    params = _params(ids)
    if params is not None:
        await queries.fetch_all_async(conn, "tracing_store", **params)


def _runs_sql(connector: Any) -> bool:
    """pgjobs' SQL goes through psycopg connectors only (not, e.g.,
    procrastinate's in-memory testing connector)."""
    return isinstance(
        connector,
        psycopg_connector.PsycopgConnector
        | sync_psycopg_connector.SyncPsycopgConnector,
    )


def store_on(connector: Any, connection: Any | None, ids: Sequence[int | None]) -> None:
    """``store`` through a procrastinate sync connector (``task.defer()``)."""
    params = _params(ids)
    if params is None or not _runs_sql(connector):
        return
    query = queries.query("tracing_store")
    if connection is not None:
        connector.execute_query_all_with_connection(connection, query=query, **params)
    else:
        connector.execute_query_all(query=query, **params)


async def store_on_async(
    connector: Any, connection: Any | None, ids: Sequence[int | None]
) -> None:
    params = _params(ids)
    if params is None or not _runs_sql(connector):
        return
    query = queries.query("tracing_store")
    if connection is not None:
        await connector.execute_query_all_async_with_connection(
            connection, query=query, **params
        )
    else:
        await connector.execute_query_all_async(query=query, **params)


def enabled() -> bool:
    """Whether spans would be recorded: the API is installed and a tracer
    provider was set (the API's default proxy records nothing)."""
    if not available:
        return False
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


@middleware.for_tasks(lambda task: enabled())
async def tracing_middleware(
    call_next: Any,
    context: job_context.JobContext,
    worker: procrastinate_worker.Worker,
) -> Any:
    """Worker middleware: one span per attempt, under the enqueuer's trace."""
    if not enabled():
        return await call_next()
    job = context.job
    row = None
    if _runs_sql(worker.app.connector):
        rows = await worker.app.connector.execute_query_all_async(
            query=queries.query("tracing_job_trace"), job_id=job.id
        )
        row = rows[0] if rows else None
    parent = None
    links = []
    if row:
        carrier = {"traceparent": row["traceparent"]}
        if row["tracestate"]:
            carrier["tracestate"] = row["tracestate"]
        parent = _propagator.extract(carrier)
        enqueuer = trace.get_current_span(parent).get_span_context()
        if enqueuer.is_valid:
            links.append(trace.Link(enqueuer))
    attributes: dict[str, str | int] = {
        "messaging.system": "pgjobs",
        "messaging.operation.type": "process",
        "messaging.destination.name": job.queue,
        "messaging.message.id": str(job.id),
        "pgjobs.job.id": job.id or 0,
        "pgjobs.task": job.task_name,
        "pgjobs.queue": job.queue,
        "pgjobs.attempt": job.attempts + 1,
    }
    tracer = trace.get_tracer(TRACER_NAME)
    with tracer.start_as_current_span(
        f"pgjobs run {job.task_name}",
        context=parent,
        kind=trace.SpanKind.CONSUMER,
        links=links,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            result = await call_next()
        except BaseException as exc:
            span.set_attribute("pgjobs.outcome", "failed")
            span.set_attribute("error.type", type(exc).__qualname__)
            span.record_exception(exc)
            span.set_status(trace.Status(trace.StatusCode.ERROR, str(exc)[:500]))
            raise
        span.set_attribute("pgjobs.outcome", "succeeded")
        return result
