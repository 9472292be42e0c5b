"""OpenTelemetry (pgjobs[otel]): the enqueuer's trace context travels with the
job to the worker, across two processes, each exporting to the SDK's in-memory
exporter; without the extra, nothing is stored and no span is made."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from opentelemetry import trace

from pgjobs import App
from tests.support import ROOT, cli_env, rows

SAMPLE = ROOT / "tests" / "tracing_sample"


def run(script: str, db_url: str, *args: str) -> list[dict[str, Any]]:
    env = cli_env(None, DATABASE_URL=db_url)
    env["PYTHONPATH"] = f"{SAMPLE}:{ROOT}"
    result = subprocess.run(
        [sys.executable, *args, str(SAMPLE / script)]
        if args
        else [sys.executable, str(SAMPLE / script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_each_attempt_is_a_span_linked_to_the_enqueuer(db_url: str) -> None:
    [request] = run("enqueuer.py", db_url)
    assert request["name"] == "POST /orders"
    # Stored beside the job, not in its arguments.
    [(job_id, traceparent, args)] = rows(
        db_url,
        "SELECT t.job_id, t.traceparent, j.args FROM pgjobs.job_traces t JOIN procrastinate_jobs j ON j.id = t.job_id",
    )
    assert traceparent.startswith(f"00-{request['trace_id']}-{request['span_id']}-")
    assert args == {"order_id": 1}

    spans = run("worker.py", db_url)
    runs = [s for s in spans if s["name"] == "pgjobs run traced_jobs.charge"]
    traced = [s for s in runs if s["attributes"]["pgjobs.job.id"] == job_id]
    untraced = [s for s in runs if s["attributes"]["pgjobs.job.id"] != job_id]
    assert [
        (s["attributes"]["pgjobs.attempt"], s["attributes"]["pgjobs.outcome"])
        for s in traced
    ] == [
        (1, "failed"),
        (2, "succeeded"),
    ]
    for span in traced:
        assert span["kind"] == "CONSUMER"
        assert span["trace_id"] == request["trace_id"]
        assert span["parent_id"] == request["span_id"]
        assert span["links"] == [request["span_id"]]
        assert span["attributes"]["pgjobs.task"] == "traced_jobs.charge"
        assert span["attributes"]["pgjobs.queue"] == "default"
        assert span["attributes"]["messaging.message.id"] == str(job_id)
    failed, succeeded = traced
    assert failed["status"] == "ERROR" and failed["events"] == ["exception"]
    assert failed["attributes"]["error.type"] == "ConnectionError"
    assert (
        succeeded["status"] == "UNSET" and "error.type" not in succeeded["attributes"]
    )
    # The task's own spans are children of the attempt's span.
    api_calls = [s for s in spans if s["name"] == "call payment API"]
    assert {s["parent_id"] for s in api_calls} >= {s["span_id"] for s in traced}
    # The job enqueued outside any span: its attempt is a root span, no link.
    assert [s["attributes"]["pgjobs.attempt"] for s in untraced] == [1, 2]
    for lone in untraced:
        assert lone["parent_id"] is None and lone["links"] == []
        assert lone["trace_id"] != request["trace_id"]


BLOCK_OTEL = """
import sys
class _NoOtel:
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ImportError("pgjobs[otel] not installed")
sys.meta_path.insert(0, _NoOtel())
"""


@pytest.mark.slow
def test_off_without_the_extra(db_url: str, tmp_path: Path) -> None:
    script = tmp_path / "no_otel.py"
    script.write_text(
        BLOCK_OTEL
        + """
import os, psycopg
from pgjobs import App
from pgjobs.monitoring import tracing
from pgjobs.testing import run_jobs
app = App()
@app.task
def noop(n: int) -> None: ...
assert not tracing.available and tracing.tracing_middleware not in app.worker_middleware_defaults
with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
    app.enqueue(conn, noop, {"n": 1})
[outcome] = run_jobs(app, os.environ["DATABASE_URL"])
print(outcome.status)
"""
    )
    env = cli_env(None, DATABASE_URL=db_url)
    result = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "succeeded"
    assert rows(db_url, "SELECT count(*) FROM pgjobs.job_traces") == [(0,)]


def test_defer_and_enqueue_many_store_the_context(
    app: App, conn: psycopg.Connection[Any]
) -> None:
    @app.task
    def noop(n: int) -> None: ...

    # No SDK in this process: a remote parent's context is active as it
    # would be under an instrumented web framework.
    context = trace.SpanContext(
        trace_id=0x1234, span_id=0x5678, is_remote=True, trace_flags=trace.TraceFlags(1)
    )
    with trace.use_span(trace.NonRecordingSpan(context)):
        ids = app.enqueue_many(conn, noop, [{"n": 1}, {"n": 2}])
        deferred = noop.configure(connection=conn).defer(n=3)
    conn.commit()
    stored = rows(
        app.settings.database_url or "",
        "SELECT job_id, traceparent FROM pgjobs.job_traces ORDER BY job_id",
    )
    expected = "00-00000000000000000000000000001234-0000000000005678-01"
    assert stored == [(ids[0], expected), (ids[1], expected), (deferred, expected)]
