"""Tasks and span export for the two-process tracing test (tests/monitoring/test_tracing.py)."""

from __future__ import annotations

import json
import sys
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from procrastinate import JobContext

from pgjobs import App, RetryPolicy

app = App()


@app.task(
    pass_context=True, retry=RetryPolicy(max_attempts=3, base_delay=0, jitter="none")
)
def charge(context: JobContext, order_id: int) -> None:
    with trace.get_tracer("shop").start_as_current_span("call payment API"):
        if context.job.attempts == 0:
            raise ConnectionError("payment API unreachable")


def in_memory_exporter() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


def dump(exporter: InMemorySpanExporter) -> None:
    spans: list[dict[str, Any]] = []
    for span in exporter.get_finished_spans():
        spans.append(
            {
                "name": span.name,
                "kind": span.kind.name,
                "trace_id": format(span.context.trace_id, "032x"),
                "span_id": format(span.context.span_id, "016x"),
                "parent_id": format(span.parent.span_id, "016x")
                if span.parent
                else None,
                "links": [format(link.context.span_id, "016x") for link in span.links],
                "attributes": dict(span.attributes or {}),
                "status": span.status.status_code.name,
                "events": [event.name for event in span.events],
            }
        )
    json.dump(spans, sys.stdout)
