"""Prometheus metrics built from the monitoring views on each scrape.

``pgjobs metrics --port 9187`` serves ``/metrics``; ``exposition()`` returns
the text once. The collector reads the views only (a ``pgjobs_monitor``
member can run it). Counts "in the window" are gauges over the views' stats
window (``pgjobs.stats_window``, default one hour), not counters.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import prometheus_client
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from pgjobs.db import connections
from pgjobs.errors import PgjobsError
from pgjobs.monitoring import views
from pgjobs.monitoring.views import MonitoringOptions, Snapshot
from pgjobs.settings import Settings

logger = logging.getLogger("pgjobs.metrics")

BREAKER_STATES = ("closed", "open", "half_open")


def _gauge(name: str, documentation: str, labels: Iterable[str] = ()) -> Any:
    return GaugeMetricFamily(name, documentation, labels=list(labels))


def families(snapshot: Snapshot) -> list[Metric]:
    """The metric families for one snapshot of the views."""
    queue_jobs = _gauge(
        "pgjobs_queue_jobs",
        "Jobs per queue and state (waiting: ready now; scheduled: later).",
        ["queue", "state"],
    )
    latency = _gauge(
        "pgjobs_queue_oldest_waiting_seconds",
        "Age of the oldest job ready to run per queue (queue latency).",
        ["queue"],
    )
    finished = _gauge(
        "pgjobs_queue_finished_jobs",
        "Jobs that finished in the stats window per queue and status "
        "(expired: ended unstarted at their start-by deadline).",
        ["queue", "status"],
    )
    paused = _gauge(
        "pgjobs_queue_paused",
        "1 while a queue is paused (no worker starts its jobs), else 0.",
        ["queue"],
    )
    queue_letters = _gauge(
        "pgjobs_queue_dead_letters",
        "Dead letters not replayed yet per queue.",
        ["queue"],
    )
    for q in snapshot.queues:
        for state in ("waiting", "scheduled", "running"):
            queue_jobs.add_metric([q.queue_name, state], getattr(q, state))
        latency.add_metric([q.queue_name], q.oldest_waiting_s)
        finished.add_metric([q.queue_name, "succeeded"], q.succeeded)
        finished.add_metric([q.queue_name, "failed"], q.failed)
        finished.add_metric([q.queue_name, "expired"], q.expired)
        paused.add_metric([q.queue_name], 1 if q.paused else 0)
        queue_letters.add_metric([q.queue_name], q.dead_letters)

    runs = _gauge(
        "pgjobs_task_runs",
        "Attempts that ended in the stats window per task and outcome.",
        ["task", "outcome"],
    )
    failure_ratio = _gauge(
        "pgjobs_task_failure_ratio",
        "Share of attempts ended in the stats window that failed or were retried.",
        ["task"],
    )
    run_time = _gauge(
        "pgjobs_task_run_seconds",
        "Run time quantiles of attempts ended in the stats window.",
        ["task", "quantile"],
    )
    wait_time = _gauge(
        "pgjobs_task_wait_seconds_mean",
        "Mean time jobs waited between ready and started in the stats window.",
        ["task"],
    )
    for t in snapshot.tasks:
        for outcome in ("succeeded", "failed", "retried", "aborted", "interrupted"):
            runs.add_metric([t.task_name, outcome], getattr(t, outcome))
        if t.failure_rate is not None:
            failure_ratio.add_metric([t.task_name], t.failure_rate)
        for quantile, value in (("0.5", t.p50_s), ("0.95", t.p95_s), ("0.99", t.p99_s)):
            if value is not None:
                run_time.add_metric([t.task_name, quantile], value)
        if t.mean_wait_s is not None:
            wait_time.add_metric([t.task_name], t.mean_wait_s)

    workers = _gauge(
        "pgjobs_workers",
        "Registered workers, alive (recent heartbeat) or not.",
        ["state"],
    )
    alive = sum(1 for w in snapshot.workers if w.alive)
    workers.add_metric(["alive"], alive)
    workers.add_metric(["dead"], len(snapshot.workers) - alive)
    worker_jobs = _gauge(
        "pgjobs_worker_running_jobs", "Jobs each worker is running.", ["worker_id"]
    )
    heartbeat = _gauge(
        "pgjobs_worker_heartbeat_age_seconds",
        "Seconds since each worker's last heartbeat.",
        ["worker_id"],
    )
    for w in snapshot.workers:
        worker_jobs.add_metric([str(w.worker_id)], w.running_jobs)
        heartbeat.add_metric([str(w.worker_id)], w.heartbeat_age_s)
    stalled = _gauge(
        "pgjobs_stalled_jobs", "Running jobs whose worker stopped sending heartbeats."
    )
    stalled.add_metric([], len(snapshot.stalled_jobs))

    breaker_state = _gauge(
        "pgjobs_breaker_state",
        "1 for each circuit breaker's current state, 0 for the others.",
        ["breaker", "state"],
    )
    breaker_failures = _gauge(
        "pgjobs_breaker_failures", "Failures counted by each breaker.", ["breaker"]
    )
    for b in snapshot.breakers:
        for state in BREAKER_STATES:
            breaker_state.add_metric([b.name, state], 1 if b.state == state else 0)
        breaker_failures.add_metric([b.name], b.failure_count)

    problems = _gauge(
        "pgjobs_health_problems",
        "Rows of pgjobs.health per check and severity (0 when healthy).",
        ["check", "severity"],
    )
    counted: dict[tuple[str, str], int] = {}
    for p in snapshot.problems:
        counted[(p.check, p.severity)] = counted.get((p.check, p.severity), 0) + 1
    for (check, severity), count in sorted(counted.items()):
        problems.add_metric([check, severity], count)

    return [
        queue_jobs,
        latency,
        finished,
        paused,
        queue_letters,
        runs,
        failure_ratio,
        run_time,
        wait_time,
        workers,
        worker_jobs,
        heartbeat,
        stalled,
        breaker_state,
        breaker_failures,
        problems,
    ]


class ViewsCollector(Collector):
    """Reads the views on every scrape; ``pgjobs_up`` is 0 when it cannot."""

    def __init__(
        self,
        conninfo: str,
        options: MonitoringOptions | None = None,
        *,
        strict: bool = False,
    ):
        """``strict``: raise database errors instead of reporting pgjobs_up 0."""
        self.conninfo = conninfo
        self.options = options
        self.strict = strict

    def collect(self) -> Iterator[Metric]:
        up = _gauge("pgjobs_up", "1 if the last scrape could read the pgjobs views.")
        try:
            snapshot = views.snapshot(self.conninfo, self.options)
        except PgjobsError as exc:
            if self.strict:
                raise
            logger.error(f"metrics scrape failed: {exc}")
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families(snapshot)


def registry(
    settings: Settings,
    options: MonitoringOptions | None = None,
    *,
    strict: bool = False,
) -> Any:
    """A registry holding only pgjobs' collector."""
    result = CollectorRegistry(auto_describe=False)
    result.register(
        ViewsCollector(
            connections.conninfo(settings),
            options or MonitoringOptions.from_settings(settings),
            strict=strict,
        )
    )
    return result


def exposition(settings: Settings, options: MonitoringOptions | None = None) -> str:
    """The metrics in Prometheus' text format, read now (errors raise)."""
    text: bytes = prometheus_client.generate_latest(
        registry(settings, options, strict=True)
    )
    return text.decode()


def serve(
    settings: Settings,
    port: int,
    addr: str = "0.0.0.0",
    options: MonitoringOptions | None = None,
) -> tuple[Any, threading.Thread]:
    """Serve ``/metrics`` on a background thread; returns (server, thread).

    ``port=0`` picks a free port: read it from ``server.server_port``.
    """
    try:
        return prometheus_client.start_http_server(
            port, addr=addr, registry=registry(settings, options)
        )
    except OSError as exc:
        raise PgjobsError(f"cannot serve metrics on {addr}:{port}: {exc}") from None
