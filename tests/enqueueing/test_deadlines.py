"""Flow control, start-by deadlines (README "Flow control"): the enqueue
options and their bad values, the claim and the workers' sweep ending late
jobs, the views and ``pgjobs jobs list/show``, and migration 0017 on a
database with jobs."""

from __future__ import annotations

import asyncio
import datetime
import json
import subprocess
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from pgjobs import App, InvalidJobOptions
from pgjobs.admin import jobs, queues
from pgjobs.db import schema
from pgjobs.monitoring import views
from pgjobs.worker import expiry
from tests.support import rows, run_cli, wait_for

APP = "tests.support.apps.flow.app"
UTC = datetime.UTC


def enqueue(url: str, queue: str = "default", **options: Any) -> int:
    from tests.support.apps.flow import app

    with psycopg.connect(url) as conn:
        job_id = app.enqueue(conn, "flow.work", {}, queue=queue, **options)
    assert job_id is not None
    return job_id


def status(url: str, job_id: int) -> str:
    [(found,)] = rows(
        url, f"SELECT status::text FROM procrastinate_jobs WHERE id = {job_id}"
    )
    return str(found)


def deadline(url: str, job_id: int) -> tuple[Any, ...] | None:
    found = rows(
        url,
        "SELECT expires_at, expired_at FROM pgjobs.job_deadlines"
        f" WHERE job_id = {job_id}",
    )
    return found[0] if found else None


def claim(url: str, queues_: list[str] | None = None) -> list[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO procrastinate_workers DEFAULT VALUES RETURNING id"
        ).fetchone()
        assert row is not None
        return [
            r[0]
            for r in conn.execute(
                "SELECT id FROM pgjobs.fetch_jobs(%s, %s, 10) ORDER BY id",
                (queues_, row[0]),
            ).fetchall()
        ]


def job_count(url: str) -> int:
    [(count,)] = rows(url, "SELECT count(*) FROM procrastinate_jobs")
    return int(count)


# -- the options ----------------------------------------------------------

NAIVE = datetime.datetime(2030, 1, 1)
SOON = datetime.datetime.now(UTC) + datetime.timedelta(minutes=5)

BAD_OPTIONS = [
    ({"expires_in": -1}, "expires_in must not be negative"),
    ({"expires_in": datetime.timedelta(seconds=-5)}, "must not be negative"),
    ({"expires_in": float("nan")}, "finite"),
    ({"expires_in": "10"}, "seconds or a timedelta"),
    ({"expires_in": 10, "expires_at": SOON}, "either expires_at or expires_in"),
    ({"expires_at": NAIVE}, "timezone-aware"),
    ({"expires_at": "2030-01-01"}, "must be a datetime"),
    ({"expires_in": 10, "delay": 60}, "could never run"),
    ({"expires_at": SOON, "run_at": SOON}, "could never run"),
]


@pytest.mark.parametrize(("options", "message"), BAD_OPTIONS)
def test_bad_deadlines_are_refused_and_write_nothing(
    db_url: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidJobOptions, match=message):
        enqueue(db_url, **options)
    from tests.support.apps.flow import app, work

    with (
        psycopg.connect(db_url) as conn,
        pytest.raises(InvalidJobOptions, match=message),
    ):
        app.enqueue_many(conn, work, [{}, {}], **options)
    configure = {
        ("schedule_in" if k == "delay" else k): ({"seconds": v} if k == "delay" else v)
        for k, v in options.items()
        if k != "run_at"
    }
    if "run_at" in options:
        configure["schedule_at"] = options["run_at"]
    with pytest.raises(InvalidJobOptions, match=message):
        work.configure(**configure)
    assert job_count(db_url) == 0


def test_deadlines_are_stored_from_every_enqueue_path(db_url: str, app: App) -> None:
    import tests.support.apps.flow

    at = datetime.datetime.now(UTC) + datetime.timedelta(hours=1)
    one = enqueue(db_url, expires_at=at)
    two = enqueue(db_url, expires_in=datetime.timedelta(minutes=30))
    with psycopg.connect(db_url) as conn:
        many = tests.support.apps.flow.app.enqueue_many(
            conn, "flow.work", [{}, {}], expires_in=90
        )
    plain = enqueue(db_url)

    @app.task(name="flow.local")
    def local() -> None: ...

    with app.open():
        deferred = local.configure(expires_in=120).defer()
        [batch] = local.configure(expires_in=120).batch_defer({})

    async def deferred_async() -> int:
        async with app.open_async():
            job_id: int = await local.configure(expires_at=at).defer_async()
            return job_id

    deferred_a = asyncio.run(deferred_async())
    assert deadline(db_url, one) == (at, None)
    found = dict(rows(db_url, "SELECT job_id, expires_at FROM pgjobs.job_deadlines"))
    assert set(found) == {one, two, *many, deferred, batch, deferred_a}  # type: ignore[misc]
    assert plain not in found
    now = datetime.datetime.now(UTC)
    assert (
        now + datetime.timedelta(minutes=29)
        < found[two]
        < now + datetime.timedelta(minutes=31)
    )
    assert found[deferred_a] == at


# -- ending late jobs -----------------------------------------------------


def test_the_claim_expires_late_jobs_and_the_views_count_them(db_url: str) -> None:
    late = enqueue(db_url, "mail", expires_in=0.2)
    kept = enqueue(db_url, "mail", expires_in=3600)
    other = enqueue(db_url, "mail")
    time.sleep(0.3)
    assert claim(db_url) == [kept, other]
    assert status(db_url, late) == "cancelled"
    expires_at, expired_at = deadline(db_url, late)  # type: ignore[misc]
    assert expired_at is not None and expired_at >= expires_at
    # Not a failure: no dead letter, no error row; a 'cancelled' event.
    assert rows(db_url, "SELECT count(*) FROM pgjobs.dead_letters") == [(0,)]
    assert rows(
        db_url,
        f"SELECT type::text FROM procrastinate_events WHERE job_id = {late}"
        " ORDER BY id",
    ) == [("deferred",), ("cancelled",)]
    [mail] = views.queue_stats(db_url)
    assert (mail.queue_name, mail.expired, mail.running) == ("mail", 1, 2)
    [task] = views.task_stats(db_url)
    assert (task.task_name, task.expired) == ("flow.work", 1)
    status_ = jobs.get_job(db_url, late)
    assert status_.expired_at == expired_at
    assert status_.waiting_reasons[0].startswith("expired: not started by its deadline")
    [listed] = [j for j in jobs.list_jobs(db_url) if j.id == late]
    assert listed.status == "cancelled" and listed.expired_at == expired_at


def test_the_sweep_ends_late_jobs_no_claim_meets(db_url: str, app: App) -> None:
    queues.pause_queue(db_url, "held")
    late = [enqueue(db_url, "held", expires_in=0.1) for _ in range(3)]
    time.sleep(0.2)
    assert {status(db_url, job_id) for job_id in late} == {"todo"}

    async def sweep() -> list[int]:
        async with app.open_async():
            return await expiry.expire_jobs(app.connector)

    assert asyncio.run(sweep()) == late
    assert {status(db_url, job_id) for job_id in late} == {"cancelled"}
    assert asyncio.run(sweep()) == []
    # A claim meeting a due deadline expires it too, paused queue or not.
    other = enqueue(db_url, "held", expires_in=0.1)
    time.sleep(0.2)
    assert claim(db_url, ["elsewhere"]) == []
    assert status(db_url, other) == "cancelled"


def test_a_retry_due_after_the_deadline_does_not_start(db_url: str) -> None:
    job = enqueue(db_url, expires_in=0.3)
    assert claim(db_url) == [job]
    # The attempt fails; procrastinate's retry puts it back for later.
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "SELECT procrastinate_retry_job_v1(%s, now() + interval '0.4 s', NULL,"
            " NULL, NULL)",
            (job,),
        )
    time.sleep(0.5)
    assert claim(db_url) == []
    assert status(db_url, job) == "cancelled"
    # A job retried by hand runs whatever its deadline was.
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE procrastinate_jobs SET status = 'failed' WHERE id = %s", (job,)
        )
    jobs.retry_job(db_url, job)
    assert deadline(db_url, job) is None
    assert claim(db_url) == [job]


def test_jobs_show_explains_a_pause_and_a_deadline(db_url: str) -> None:
    job = enqueue(db_url, "held", expires_in=3600)
    queues.pause_queue(db_url, "held", paused_by="ops")
    shown = run_cli("jobs", "show", str(job), db_url=db_url)
    assert shown.returncode == 0, shown.stderr
    why = [line for line in shown.stdout.splitlines() if line.startswith("why:")]
    assert len(why) == 2
    assert "queue held is paused" in why[0] and "by ops" in why[0]
    assert "expires at" in why[1]
    assert "expires_at:" in shown.stdout
    as_json = json.loads(
        run_cli("jobs", "show", str(job), "--json", db_url=db_url).stdout
    )
    assert as_json["queue_paused_by"] == "ops" and as_json["expires_at"]


def test_jobs_list_and_show_an_expired_job(db_url: str) -> None:
    job = enqueue(db_url, expires_in=0.1)
    time.sleep(0.2)
    claim(db_url)
    listed = run_cli("jobs", "list", db_url=db_url)
    assert "cancelled (expired)" in listed.stdout
    shown = run_cli("jobs", "show", str(job), db_url=db_url)
    assert "why:          expired: not started by its deadline" in shown.stdout
    stats = json.loads(run_cli("stats", "--json", db_url=db_url).stdout)
    assert stats["queues"][0]["expired"] == 1
    assert stats["tasks"][0]["expired"] == 1


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_worker_starts_jobs_in_time_and_never_a_late_one(
    runs_db: str, worker_processes: Callable[..., subprocess.Popen[bytes]]
) -> None:
    late = enqueue(runs_db, expires_in=0.3)
    on_time = enqueue(runs_db, expires_in=120)
    time.sleep(0.5)  # the late one's deadline passes before any worker is up
    queues.pause_queue(runs_db, "held")
    held = enqueue(runs_db, "held", expires_in=1)
    worker_processes("--app", APP, "-c", "2", PGJOBS_EXPIRY_INTERVAL="0.5")
    wait_for(lambda: status(runs_db, on_time) == "succeeded", what="the on-time job")
    assert status(runs_db, late) == "cancelled" and deadline(runs_db, late)[1]  # type: ignore[index]
    # The paused queue's job is ended by the sweep once its deadline passes.
    wait_for(lambda: status(runs_db, held) == "cancelled", what="the sweep")
    ran = rows(runs_db, "SELECT job_id FROM flow_runs ORDER BY job_id")
    assert ran == [(on_time,)]


# -- the migration --------------------------------------------------------


def test_migration_0017_up_and_down_on_a_database_with_jobs(empty_db_url: str) -> None:
    before = next(r for r in schema.history() if r.revision == "0017").down_revision
    assert isinstance(before, str)
    schema.upgrade(empty_db_url, before)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, args) VALUES"
            " ('a', 't', '{}'), ('b', 't', '{}')"
        )
    schema.upgrade(empty_db_url, "0017")
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("SELECT pgjobs.pause_queue('a')")
        conn.execute(
            "SELECT pgjobs.store_job_deadlines(ARRAY[2]::bigint[], now() + interval '1 h')"
        )
        assert conn.execute(
            "SELECT queue_name, paused FROM pgjobs.queue_stats ORDER BY 1"
        ).fetchall() == [("a", True), ("b", False)]
    assert claim(empty_db_url) == [2]
    schema.downgrade(empty_db_url, before)
    assert schema.current(empty_db_url) == before
    assert rows(
        empty_db_url, "SELECT id, status::text FROM procrastinate_jobs ORDER BY id"
    ) == [(1, "todo"), (2, "doing")]
    assert claim(empty_db_url) == [1]  # the 0015 claim knows no pause
    assert rows(empty_db_url, "SELECT to_regclass('pgjobs.paused_queues') IS NULL") == [
        (True,)
    ]
    schema.upgrade(empty_db_url)
    assert schema.current(empty_db_url) == schema.head()
