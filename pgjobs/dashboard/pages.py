"""The dashboard's pages (GET): each reads pgjobs' views or admin API."""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pgjobs.admin import jobs
from pgjobs.dashboard import audit
from pgjobs.dashboard.state import dashboard_of
from pgjobs.db import queries
from pgjobs.errors import (
    BreakerNotFound,
    DatabaseUnavailable,
    DeadLetterNotFound,
    InvalidJobOptions,
    InvalidJobState,
    InvalidQueueName,
    JobNotFound,
    PermissionDenied,
    PgjobsError,
    QueryTimeout,
    ScheduleNotFound,
)
from pgjobs.failures import breakers
from pgjobs.monitoring import events, views
from pgjobs.scheduling import schedules

PAGE_SIZE = 50
#: Matching jobs are counted up to this many ("10000+").
COUNT_BOUND = 10_000
#: A bulk action applies to at most this many jobs (oldest first).
BULK_LIMIT = 1000
BULK_ACTIONS = {"retry": "failed", "cancel": "todo"}


def text_param(request: Request, name: str) -> str | None:
    value = request.query_params.get(name, "").strip()
    if len(value) > 200:
        raise HTTPException(400, f"{name} is too long")
    return value or None


def int_param(request: Request, name: str) -> int | None:
    value = request.query_params.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise HTTPException(400, f"{name} must be a whole number") from None


def job_filters(request: Request) -> dict[str, str | None]:
    status = text_param(request, "status")
    if status is not None and status not in jobs.STATUSES:
        raise HTTPException(400, f"unknown status (one of {', '.join(jobs.STATUSES)})")
    return {
        "status": status,
        "queue": text_param(request, "queue"),
        "task": text_param(request, "task"),
    }


def _notice(request: Request, conn: Any) -> audit.AuditEntry | None:
    entry_id = int_param(request, "done")
    return audit.get(conn, entry_id) if entry_id is not None else None


def _optional(conn: Any, call: Any, *args: Any, **kwargs: Any) -> Any:
    """A section the role may not read (pgjobs_monitor) is None, not an error.

    It runs in a savepoint: the request's transaction goes on after a refusal.
    """
    try:
        with conn.transaction():
            return call(*args, **kwargs)
    except PermissionDenied:
        return None


def overview(request: Request) -> Response:
    dashboard = dashboard_of(request)
    with dashboard.connection() as conn:
        queues = views.queue_stats(conn, dashboard.options)
        problems = views.health(conn, dashboard.options)
        throughput = _optional(conn, queries.fetch_all, conn, "dashboard_throughput")
        latest = _optional(conn, events.latest, conn, limit=15)
        notice = _optional(conn, _notice, request, conn)
    peak = max([1, *(m["succeeded"] + m["failed"] for m in throughput or [])])
    return dashboard.render(
        request,
        "overview.html",
        page="overview",
        queues=queues,
        problems=problems,
        throughput=throughput,
        peak=peak,
        events=latest,
        notice=notice,
    )


def queue_list(request: Request) -> Response:
    dashboard = dashboard_of(request)
    with dashboard.connection() as conn:
        queues = views.queue_stats(conn, dashboard.options)
        notice = _optional(conn, _notice, request, conn)
    return dashboard.render(
        request,
        "queues.html",
        page="queues",
        queues=queues,
        queue_actions=True,
        notice=notice,
    )


def job_list(request: Request) -> Response:
    dashboard = dashboard_of(request)
    filters = job_filters(request)
    before = int_param(request, "before")
    with dashboard.connection() as conn:
        rows = queries.fetch_all(
            conn, "dashboard_jobs", before=before, limit=PAGE_SIZE + 1, **filters
        )
        count = queries.fetch_value(
            conn, "dashboard_jobs_count", bound=COUNT_BOUND + 1, **filters
        )
        notice = _notice(request, conn)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    return dashboard.render(
        request,
        "jobs.html",
        page="jobs",
        jobs=rows,
        filters=filters,
        statuses=jobs.STATUSES,
        count=count,
        count_bound=COUNT_BOUND,
        next_before=rows[-1]["id"] if more else None,
        before=before,
        bulk_action={v: k for k, v in BULK_ACTIONS.items()}.get(
            filters["status"] or ""
        ),
        notice=notice,
    )


def bulk_confirm(request: Request) -> Response:
    dashboard = dashboard_of(request)
    action = text_param(request, "action")
    if action not in BULK_ACTIONS:
        raise HTTPException(400, "action must be retry or cancel")
    filters = job_filters(request)
    filters["status"] = BULK_ACTIONS[action]
    with dashboard.connection() as conn:
        count = queries.fetch_value(
            conn, "dashboard_jobs_count", bound=BULK_LIMIT + 1, **filters
        )
    return dashboard.render(
        request,
        "bulk.html",
        page="jobs",
        action=action,
        filters=filters,
        count=count,
        limit=BULK_LIMIT,
    )


def job_detail(request: Request) -> Response:
    dashboard = dashboard_of(request)
    job_id: int = request.path_params["job_id"]
    with dashboard.connection() as conn:
        job = jobs.get_job(conn, job_id)
        timeline = queries.fetch_all(conn, "dashboard_job_events", job_id=job_id)
        letters = queries.fetch_all(conn, "dashboard_job_dead_letters", job_id=job_id)
        notice = _notice(request, conn)
    return dashboard.render(
        request,
        "job.html",
        page="jobs",
        job=job,
        timeline=timeline,
        letters=letters,
        notice=notice,
    )


def dead_letter_list(request: Request) -> Response:
    dashboard = dashboard_of(request)
    task = text_param(request, "task")
    error_type = text_param(request, "error_type")
    show_all = request.query_params.get("all") == "1"
    before = int_param(request, "before")
    with dashboard.connection() as conn:
        groups = queries.fetch_all(conn, "dashboard_dead_letter_groups")
        rows = queries.fetch_all(
            conn,
            "dashboard_dead_letters",
            all=show_all,
            task=task,
            error_type=error_type,
            before=before,
            limit=PAGE_SIZE + 1,
        )
        notice = _notice(request, conn)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    return dashboard.render(
        request,
        "dead_letters.html",
        page="dead_letters",
        groups=groups,
        letters=rows,
        task=task,
        error_type=error_type,
        show_all=show_all,
        next_before=rows[-1]["id"] if more else None,
        notice=notice,
    )


def task_list(request: Request) -> Response:
    dashboard = dashboard_of(request)
    with dashboard.connection() as conn:
        tasks = views.task_stats(conn, dashboard.options)
    return dashboard.render(request, "tasks.html", page="tasks", tasks=tasks)


def worker_list(request: Request) -> Response:
    dashboard = dashboard_of(request)
    with dashboard.connection() as conn:
        found = views.workers(conn, dashboard.options)
        stalled = views.stalled_jobs(conn, dashboard.options)
    return dashboard.render(
        request, "workers.html", page="workers", workers=found, stalled=stalled
    )


def schedule_list(request: Request) -> Response:
    dashboard = dashboard_of(request)
    with dashboard.connection() as conn:
        health = schedules.periodic_health(conn)
        runtime = _optional(conn, schedules.list_schedules, conn)
        notice = _optional(conn, _notice, request, conn)
    by_name = {s.name: s for s in runtime or []}
    return dashboard.render(
        request,
        "schedules.html",
        page="schedules",
        health=health,
        by_name=by_name,
        notice=notice,
    )


def breaker_list(request: Request) -> Response:
    dashboard = dashboard_of(request)
    with dashboard.connection() as conn:
        found: list[Any] | None = _optional(conn, breakers.list_breakers, conn)
        if found is None:  # pgjobs_monitor: the view without the error text
            found = queries.fetch_all(conn, "monitoring_breaker_states")
        notice = _optional(conn, _notice, request, conn)
    return dashboard.render(
        request, "breakers.html", page="breakers", breakers=found, notice=notice
    )


def audit_list(request: Request) -> Response:
    dashboard = dashboard_of(request)
    before = int_param(request, "before")
    with dashboard.connection() as conn:
        found = audit.entries(conn, before=before, limit=PAGE_SIZE + 1)
    more = len(found) > PAGE_SIZE
    found = found[:PAGE_SIZE]
    return dashboard.render(
        request,
        "audit.html",
        page="audit",
        entries=found,
        next_before=found[-1].id if more else None,
    )


def healthz(request: Request) -> Response:
    """200 when ``pgjobs.health`` is empty, 503 with its rows otherwise."""
    dashboard = dashboard_of(request)
    with dashboard.connection() as conn:
        problems = views.health(conn, dashboard.options)
    return JSONResponse(
        {
            "healthy": not problems,
            "problems": [
                {
                    "check": p.check,
                    "subject": p.subject,
                    "detail": p.detail,
                    "severity": p.severity,
                }
                for p in problems
            ],
        },
        status_code=503 if problems else 200,
        headers={"cache-control": "no-store"},
    )


def routes() -> list[Route]:
    return [
        Route("/", overview),
        Route("/queues", queue_list),
        Route("/jobs", job_list),
        Route("/jobs/bulk", bulk_confirm),
        Route("/jobs/{job_id:int}", job_detail),
        Route("/dead-letters", dead_letter_list),
        Route("/tasks", task_list),
        Route("/workers", worker_list),
        Route("/schedules", schedule_list),
        Route("/breakers", breaker_list),
        Route("/audit", audit_list),
        Route("/healthz", healthz),
    ]


_STATUS = {
    JobNotFound: 404,
    DeadLetterNotFound: 404,
    BreakerNotFound: 404,
    ScheduleNotFound: 404,
    InvalidJobState: 409,
    InvalidJobOptions: 409,
    InvalidQueueName: 400,
    PermissionDenied: 403,
    QueryTimeout: 503,
    DatabaseUnavailable: 503,
}


def _error_page(request: Request, status: int, message: str) -> Response:
    if request.url.path.endswith("/healthz"):
        return JSONResponse({"healthy": False, "error": message}, status_code=503)
    return dashboard_of(request).render(
        request,
        "error.html",
        status_code=status,
        page="",
        status=status,
        message=message,
    )


def _pgjobs_error(request: Request, exc: Exception) -> Response:
    status = next(
        (code for kind, code in _STATUS.items() if isinstance(exc, kind)), 500
    )
    message = str(exc)
    if isinstance(exc, PermissionDenied):
        message = (
            f"the dashboard's database role may not read this ({message}); "
            "pgjobs_monitor reads the monitoring views only"
        )
    elif isinstance(exc, QueryTimeout):
        message = (
            "the query took longer than PGJOBS_DASHBOARD_STATEMENT_TIMEOUT and "
            "was cancelled; narrow the filter"
        )
    return _error_page(request, status, message)


def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error_page(request, exc.status_code, str(exc.detail))


def exception_handlers() -> dict[Any, Any]:
    return {PgjobsError: _pgjobs_error, HTTPException: _http_error}
