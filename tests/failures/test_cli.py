"""``pgjobs jobs|dlq|breakers``: the real CLI, JSON parsed back, error paths."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg

from pgjobs import App, RetryPolicy
from tests.support import one, run_cli, run_worker


def cli_json(db_url: str, *args: str) -> Any:
    result = run_cli(*args, "--json", db_url=db_url)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def cli_parallel(db_url: str, *commands: tuple[str, ...]) -> list[Any]:
    """Run independent commands at once (each is a ~1 s Python start-up).

    A command ending in "--json" returns its parsed output, one ending in
    "!error" the error line it must print, others their stdout.
    """

    def run(command: tuple[str, ...]) -> Any:
        if command[-1] == "--json":
            return cli_json(db_url, *command[:-1])
        if command[-1] == "!error":
            return cli_error(db_url, *command[:-1])
        result = run_cli(*command, db_url=db_url)
        assert result.returncode == 0, result.stderr
        return result.stdout

    with ThreadPoolExecutor(len(commands)) as pool:
        return list(pool.map(run, commands))


def cli_error(db_url: str, *args: str) -> str:
    result = run_cli(*args, db_url=db_url)
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


async def test_jobs_commands(
    app: App, db_url: str, db: psycopg.Connection[Any]
) -> None:
    @app.task(
        name="t.fails", queue="crm", retry=RetryPolicy(max_attempts=2, base_delay=0)
    )
    def fails(customer_id: int) -> None:
        raise ConnectionError("crm down")

    @app.task(name="t.waits")
    def waits() -> None: ...

    failed = app.enqueue(db, "t.fails", {"customer_id": 5})
    await run_worker(app)
    waiting = app.enqueue(db, "t.waits", delay=3600)
    running = one(
        db,
        "INSERT INTO procrastinate_jobs (queue_name, task_name, status) "
        "VALUES ('default', 't.waits', 'doing') RETURNING id",
    )

    (
        listed,
        only_failed,
        shown,
        text,
        unknown_show,
        running_cancel,
        retry_waiting,
    ) = cli_parallel(
        db_url,
        ("jobs", "list", "--json"),
        ("jobs", "list", "--status", "failed", "--queue", "crm", "--json"),
        ("jobs", "show", str(failed), "--json"),
        ("jobs", "show", str(failed)),
        ("jobs", "show", "999999", "!error"),
        ("jobs", "cancel", str(running), "!error"),
        ("jobs", "retry", str(waiting), "!error"),
    )
    assert [j["id"] for j in listed] == [running, waiting, failed]
    assert [(j["id"], j["last_error_type"], j["attempts"]) for j in only_failed] == [
        (failed, "ConnectionError", 2)
    ]
    assert (shown["status"], shown["attempts"], shown["args"]) == (
        "failed",
        2,
        {"customer_id": 5},
    )
    assert [e["attempt"] for e in shown["errors"]] == [1, 2]
    assert shown["errors"][0]["error_message"] == "crm down"
    assert "attempt 2 at" in text and "ConnectionError: crm down" in text
    assert "no job with id 999999" in unknown_show
    assert "use --abort" in running_cancel
    assert "only failed jobs" in retry_waiting

    aborted, cancelled, retried = cli_parallel(
        db_url,
        ("jobs", "cancel", str(running), "--abort", "--json"),
        ("jobs", "cancel", str(waiting), "--json"),
        ("jobs", "retry", str(failed), "--json"),
    )
    assert aborted["outcome"] == "abort_requested"
    assert cancelled["outcome"] == "cancelled"
    assert retried == {"job_id": failed, "status": "todo"}
    assert (
        one(db, "SELECT status::text FROM procrastinate_jobs WHERE id = %s", failed)
        == "todo"
    )
    assert (
        one(db, "SELECT abort_requested FROM procrastinate_jobs WHERE id = %s", running)
        is True
    )
    bad_status = run_cli("jobs", "list", "--status", "lost", db_url=db_url)
    assert bad_status.returncode == 2 and "Traceback" not in bad_status.stderr


async def test_dlq_commands(app: App, db_url: str, db: psycopg.Connection[Any]) -> None:
    @app.task(name="t.mail", queue="mail")
    def mail(to: str) -> None:
        raise ValueError(f"bad address {to}")

    app.enqueue_many(db, "t.mail", [{"to": "a@"}, {"to": "b@"}, {"to": "c@"}])
    await run_worker(app)

    letters = cli_json(db_url, "dlq", "list")
    assert len(letters) == 3 and {x["error_type"] for x in letters} == {"ValueError"}
    # Workers run the three jobs concurrently, so letter ids need not follow
    # job order: the expected args are those of the first letter's own job.
    first_letter = min(letters, key=lambda x: x["id"])
    first = first_letter["id"]
    first_args = one(
        db, "SELECT args FROM procrastinate_jobs WHERE id = %s", first_letter["job_id"]
    )
    filtered, shown, no_filter, unknown_replay, bad_age = cli_parallel(
        db_url,
        ("dlq", "list", "--error-type", "ValueError", "--since", "1h", "--json"),
        ("dlq", "show", str(first), "--json"),
        ("dlq", "replay", "!error"),
        ("dlq", "replay", "999999", "!error"),
        ("dlq", "purge", "--older-than", "soon", "!error"),
    )
    assert len(filtered) == 3
    assert shown["args"] == first_args and "ValueError" in shown["traceback"]
    assert "say which dead letters" in no_filter
    assert "no dead letter with id 999999" in unknown_replay
    assert "invalid age" in bad_age

    [replayed] = cli_json(db_url, "dlq", "replay", str(first))
    assert replayed["letter_id"] == first
    assert (
        one(db, "SELECT args FROM procrastinate_jobs WHERE id = %s", replayed["job_id"])
        == first_args
    )
    again, rest = cli_parallel(
        db_url,
        ("dlq", "replay", str(first), "!error"),
        ("dlq", "replay", "--all", "--json"),
    )
    assert "already replayed" in again
    assert len(rest) == 2
    assert one(db, "SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo'") == 3
    assert (
        one(db, "SELECT count(*) FROM pgjobs.dead_letters WHERE replayed_at IS NULL")
        == 0
    )
    assert cli_json(
        db_url, "dlq", "purge", "--older-than", "0s", "--replayed-only"
    ) == {"deleted": 3}


def test_breakers_commands(db_url: str, db: psycopg.Connection[Any]) -> None:
    db.execute(
        "INSERT INTO pgjobs.breakers (name, state, failure_threshold, recovery_window, "
        "success_threshold, failure_count, opened_at, reopens_at) VALUES "
        "('crm', 'open', 3, '30 seconds', 1, 3, now(), now() + interval '30 seconds')"
    )
    [crm] = cli_json(db_url, "breakers", "list")
    assert (
        crm["name"],
        crm["state"],
        crm["failure_count"],
        crm["recovery_window"],
    ) == ("crm", "open", 3, 30.0)
    assert crm["reopens_at"] is not None
    reset, unknown = cli_parallel(
        db_url,
        ("breakers", "reset", "crm", "--json"),
        ("breakers", "reset", "nope", "!error"),
    )
    assert (reset["state"], reset["failure_count"], reset["reopens_at"]) == (
        "closed",
        0,
        None,
    )
    assert one(db, "SELECT state FROM pgjobs.breakers WHERE name = 'crm'") == "closed"
    assert "no circuit breaker named 'nope'" in unknown


def test_jobs_list_age_filters_and_hostile_filters(
    app: App, db_url: str, db: psycopg.Connection[Any]
) -> None:
    @app.task(name="t.noop")
    def noop(n: int) -> None: ...

    old, recent = app.enqueue_many(db, "t.noop", [{"n": 1}, {"n": 2}])
    db.execute(
        "UPDATE procrastinate_events SET at = now() - interval '2 days'"
        " WHERE job_id = %s",
        [old],
    )
    hostile = "t.noop' OR '1'='1"
    older, newer, everything, injected, bad_age = cli_parallel(
        db_url,
        ("jobs", "list", "--older-than", "1d", "--json"),
        ("jobs", "list", "--newer-than", "1h", "--json"),
        ("jobs", "list", "--task", "t.noop", "--json"),
        (
            "jobs",
            "list",
            "--task",
            hostile,
            "--queue",
            "x'; DROP TABLE t; --",
            "--json",
        ),
        ("jobs", "list", "--older-than", "soon", "!error"),
    )
    assert [j["id"] for j in older] == [old]
    assert [j["id"] for j in newer] == [recent]
    assert [j["id"] for j in everything] == [recent, old]
    assert everything[1]["enqueued_at"] < everything[0]["enqueued_at"]
    assert injected == []
    assert "invalid age 'soon'" in bad_age
    assert one(db, "SELECT count(*) FROM procrastinate_jobs") == 2
