"""The dashboard's actions (POST forms), each through pgjobs' admin API.

Every action checks the CSRF token (403 without it) and read-only mode (403),
runs in one transaction with its audit row (``pgjobs.audit_log``), and
redirects (303) to a page showing that audit row.
"""

from __future__ import annotations

import datetime
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from pgjobs.admin import jobs, queues
from pgjobs.dashboard import audit, security
from pgjobs.dashboard.pages import BULK_ACTIONS, BULK_LIMIT
from pgjobs.dashboard.state import Dashboard, dashboard_of
from pgjobs.db import queries
from pgjobs.errors import InvalidJobState
from pgjobs.failures import breakers, dead_letters
from pgjobs.scheduling import schedules

#: Ages offered by the purge form.
PURGE_AGES = {
    "1d": datetime.timedelta(days=1),
    "7d": datetime.timedelta(days=7),
    "30d": datetime.timedelta(days=30),
    "90d": datetime.timedelta(days=90),
}


@dataclass
class Done:
    """What an action did, for its audit row, and where to go next."""

    target: str
    redirect: str
    job_ids: list[int] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)
    #: The audit row's action when it is not the route's (bulk_retry...).
    action: str | None = None


Action = Callable[[psycopg.Connection[Any], Request, FormData], Done]


def _field(form: FormData, name: str, required: bool = True) -> str | None:
    value = form.get(name)
    text = value.strip() if isinstance(value, str) else ""
    if len(text) > 200:
        raise HTTPException(400, f"{name} is too long")
    if required and not text:
        raise HTTPException(400, f"{name} is required")
    return text or None


def _job_id(request: Request) -> int:
    job_id: int = request.path_params["job_id"]
    return job_id


def retry(conn: psycopg.Connection[Any], request: Request, form: FormData) -> Done:
    job_id = jobs.retry_job(conn, _job_id(request))
    return Done(f"job {job_id}", f"/jobs/{job_id}", [job_id])


def cancel(conn: psycopg.Connection[Any], request: Request, form: FormData) -> Done:
    result = jobs.cancel_job(conn, _job_id(request))
    return Done(f"job {result.job_id}", f"/jobs/{result.job_id}", [result.job_id])


def abort(conn: psycopg.Connection[Any], request: Request, form: FormData) -> Done:
    result = jobs.cancel_job(conn, _job_id(request), abort=True)
    return Done(
        f"job {result.job_id}",
        f"/jobs/{result.job_id}",
        [result.job_id],
        {"outcome": result.outcome},
    )


def bulk(conn: psycopg.Connection[Any], request: Request, form: FormData) -> Done:
    action = _field(form, "action")
    if action not in BULK_ACTIONS:
        raise HTTPException(400, "action must be retry or cancel")
    if form.get("confirm") != "yes":
        raise HTTPException(400, "confirm the bulk action (confirm=yes)")
    queue = _field(form, "queue", required=False)
    task = _field(form, "task", required=False)
    status = BULK_ACTIONS[action]
    ids = [
        row["id"]
        for row in queries.fetch_all(
            conn,
            "dashboard_job_ids",
            status=status,
            queue=queue,
            task=task,
            limit=BULK_LIMIT,
        )
    ]
    done: list[int] = []
    for job_id in ids:
        try:  # a job that moved on meanwhile is left alone
            if action == "retry":
                done.append(jobs.retry_job(conn, job_id))
            else:
                done.append(jobs.cancel_job(conn, job_id).job_id)
        except InvalidJobState:
            continue
    filters = {"status": status, "queue": queue, "task": task}
    query = urllib.parse.urlencode({k: v for k, v in filters.items() if v})
    described = ", ".join(f"{k}={v}" for k, v in filters.items() if v)
    return Done(
        f"{len(done)} job(s) matching {described}",
        f"/jobs?{query}",
        done,
        {"filter": filters, "matched": len(ids)},
        action=f"bulk_{action}",
    )


def replay_letter(
    conn: psycopg.Connection[Any], request: Request, form: FormData
) -> Done:
    letter_id: int = request.path_params["letter_id"]
    replayed = dead_letters.replay_dead_letter(conn, letter_id)
    letter = dead_letters.get_dead_letter(conn, letter_id)
    return Done(
        f"dead letter {letter_id} of job {letter.job_id}",
        "/dead-letters",
        [replayed.job_id],
        {"dead_letter_id": letter_id, "job_id": letter.job_id},
    )


def replay_group(
    conn: psycopg.Connection[Any], request: Request, form: FormData
) -> Done:
    task = _field(form, "task")
    error_type = _field(form, "error_type")
    replayed = dead_letters.replay_dead_letters(conn, task=task, error_type=error_type)
    return Done(
        f"{len(replayed)} dead letter(s) of task {task} with {error_type}",
        "/dead-letters",
        [r.job_id for r in replayed],
        {"dead_letter_ids": [r.letter_id for r in replayed]},
    )


def purge(conn: psycopg.Connection[Any], request: Request, form: FormData) -> Done:
    age = _field(form, "older_than")
    if age not in PURGE_AGES:
        raise HTTPException(400, f"older_than must be one of {', '.join(PURGE_AGES)}")
    replayed_only = form.get("replayed_only") == "yes"
    deleted = dead_letters.purge_dead_letters(
        conn, PURGE_AGES[age], replayed_only=replayed_only
    )
    return Done(
        f"{deleted} dead letter(s) older than {age}"
        + (" (replayed only)" if replayed_only else ""),
        "/dead-letters",
        detail={"deleted": deleted, "older_than": age, "replayed_only": replayed_only},
    )


def reset_breaker(
    conn: psycopg.Connection[Any], request: Request, form: FormData
) -> Done:
    name = _field(form, "name")
    assert name is not None
    breaker = breakers.reset_breaker(conn, name)
    return Done(f"breaker {breaker.name}", "/breakers")


def pause_schedule(
    conn: psycopg.Connection[Any], request: Request, form: FormData
) -> Done:
    name = _field(form, "name")
    assert name is not None
    schedules.pause_schedule(conn, name)
    return Done(f"schedule {name}", "/schedules")


def resume_schedule(
    conn: psycopg.Connection[Any], request: Request, form: FormData
) -> Done:
    name = _field(form, "name")
    assert name is not None
    schedules.resume_schedule(conn, name)
    return Done(f"schedule {name}", "/schedules")


def run_schedule(
    conn: psycopg.Connection[Any], request: Request, form: FormData
) -> Done:
    name = _field(form, "name")
    assert name is not None
    run = schedules.run_schedule(conn, name)
    return Done(
        f"schedule {name}",
        "/schedules",
        [run.job_id] if run.job_id is not None else [],
        {"tick_at": run.tick_at.isoformat()},
    )


def pause_queue(
    conn: psycopg.Connection[Any], request: Request, form: FormData
) -> Done:
    name = _field(form, "name")
    assert name is not None
    actor = security.actor(request.scope, dashboard_of(request).basic_auth)
    change = queues.pause_queue(conn, name, paused_by=f"dashboard: {actor}")
    return Done(f"queue {name}", "/queues", detail={"changed": change.changed})


def resume_queue(
    conn: psycopg.Connection[Any], request: Request, form: FormData
) -> Done:
    name = _field(form, "name")
    assert name is not None
    change = queues.resume_queue(conn, name)
    return Done(f"queue {name}", "/queues", detail={"changed": change.changed})


def _apply(
    dashboard: Dashboard, name: str, action: Action, request: Request, form: FormData
) -> int:
    actor = security.actor(request.scope, dashboard.basic_auth)
    with dashboard.connection() as conn, conn.transaction():
        done = action(conn, request, form)
        entry_id = audit.record(
            conn,
            actor=actor,
            action=done.action or name,
            target=done.target,
            job_ids=done.job_ids,
            detail=done.detail,
        )
    request.state.redirect = done.redirect
    return entry_id


def endpoint(name: str, action: Action) -> Callable[[Request], Any]:
    async def handle(request: Request) -> Response:
        dashboard = dashboard_of(request)
        form = await request.form()
        if dashboard.read_only:
            await run_in_threadpool(dashboard.pool)  # role checked on first use
        if dashboard.read_only:
            raise HTTPException(403, "the dashboard is read-only: no actions")
        token = form.get(security.CSRF_FIELD)
        if not dashboard.csrf.accepts(
            request.cookies.get(security.CSRF_COOKIE),
            token if isinstance(token, str) else None,
        ):
            raise HTTPException(
                403, "missing or invalid CSRF token: reload the page and try again"
            )
        entry_id = await run_in_threadpool(
            _apply, dashboard, name, action, request, form
        )
        target: str = request.state.redirect
        separator = "&" if "?" in target else "?"
        root = request.scope.get("root_path", "")
        return RedirectResponse(f"{root}{target}{separator}done={entry_id}", 303)

    return handle


def routes() -> list[Route]:
    posts: list[tuple[str, str, Action]] = [
        ("/jobs/{job_id:int}/retry", "retry", retry),
        ("/jobs/{job_id:int}/cancel", "cancel", cancel),
        ("/jobs/{job_id:int}/abort", "abort", abort),
        ("/jobs/bulk", "bulk", bulk),
        ("/dead-letters/{letter_id:int}/replay", "replay", replay_letter),
        ("/dead-letters/replay", "replay", replay_group),
        ("/dead-letters/purge", "purge", purge),
        ("/breakers/reset", "reset_breaker", reset_breaker),
        ("/schedules/pause", "pause_schedule", pause_schedule),
        ("/schedules/resume", "resume_schedule", resume_schedule),
        ("/schedules/run", "run_schedule", run_schedule),
        ("/queues/pause", "pause_queue", pause_queue),
        ("/queues/resume", "resume_queue", resume_queue),
    ]
    return [
        Route(path, endpoint(name, action), methods=["POST"])
        for path, name, action in posts
    ]
