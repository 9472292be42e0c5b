"""Runtime schedules from Python, the tick claim, missed runs and health."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import psycopg
import pytest

from pgjobs import (
    App,
    InvalidPayload,
    InvalidSchedule,
    ScheduleExists,
    ScheduleNotFound,
    Settings,
    TaskNotFound,
    schedules,
)
from tests.support import run_worker

HOUR = datetime.timedelta(hours=1)


@pytest.fixture
def sched_app(settings: Settings) -> App:
    app = App(settings=settings)

    @app.task(name="report")
    def report(kind: str, limit: int = 10) -> None:
        pass

    @app.task(name="broken")
    def broken() -> None:
        raise ValueError("no data")

    return app


def count(db: psycopg.Connection[Any], query: str, *params: Any) -> Any:
    row = db.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def test_add_validates_and_stores(settings: Settings, sched_app: App) -> None:
    schedule = schedules.add_schedule(
        settings,
        sched_app,
        "daily-report",
        "report",
        cron="0 0 * * *",
        args={"kind": "daily"},
        missed_runs="once",
    )
    assert schedule.task_name == "report"
    assert schedule.args == {"kind": "daily"}
    assert schedule.queue_name == "default"
    assert schedule.expected_interval == datetime.timedelta(days=1)
    assert schedule.next_run_at.time() == datetime.time(0, 0)
    assert schedule.schedule == "0 0 * * *"
    assert [s.name for s in schedules.list_schedules(settings)] == ["daily-report"]
    with pytest.raises(ScheduleExists):
        schedules.add_schedule(
            settings, sched_app, "daily-report", "report", cron="0 0 * * *",
            args={"kind": "x"},
        )  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"task": "nope", "cron": "* * * * *"}, TaskNotFound, "unknown task"),
        ({"cron": "61 * * * *"}, InvalidSchedule, "invalid cron"),
        ({"cron": "* * * *"}, InvalidSchedule, "invalid cron"),
        ({}, InvalidSchedule, "either a cron"),
        ({"cron": "* * * * *", "interval_seconds": 5}, InvalidSchedule, "either"),
        ({"cron": "* * * * *", "args": {}}, InvalidPayload, "missing argument"),
        (
            {"cron": "* * * * *", "args": {"kind": "x", "limit": "many"}},
            InvalidPayload,
            "argument limit",
        ),
        ({"interval_seconds": 0}, InvalidSchedule, "invalid interval"),
        ({"cron": "* * * * *", "missed_runs": "some"}, InvalidSchedule, "policy"),
    ],
)
def test_invalid_schedules_write_nothing(
    settings: Settings,
    sched_app: App,
    db: psycopg.Connection[Any],
    kwargs: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    kwargs.setdefault("args", {"kind": "x"})
    task = kwargs.pop("task", "report")
    with pytest.raises(error, match=message):
        schedules.add_schedule(settings, sched_app, "s", task, **kwargs)
    assert count(db, "SELECT count(*) FROM pgjobs.schedules") == 0


def test_change_pause_resume_remove(
    settings: Settings, sched_app: App, db: psycopg.Connection[Any]
) -> None:
    schedules.add_schedule(
        settings, sched_app, "s", "report", interval_seconds=60, args={"kind": "a"}
    )
    changed = schedules.update_schedule(
        settings, sched_app, "s", cron="0 */2 * * *", args={"kind": "b"}, priority=5
    )
    assert (changed.cron, changed.interval_seconds) == ("0 */2 * * *", None)
    assert changed.args == {"kind": "b"} and changed.priority == 5
    assert changed.expected_interval == 2 * HOUR
    with pytest.raises(InvalidPayload):
        schedules.update_schedule(settings, sched_app, "s", args={"kind": 1})
    assert schedules.get_schedule(settings, "s").args == {"kind": "b"}

    assert schedules.pause_schedule(settings, "s").paused
    resumed = schedules.resume_schedule(settings, "s")
    assert not resumed.paused and resumed.next_run_at > changed.updated_at

    schedules.set_expected_interval(settings, "s", 3 * HOUR)
    [health] = schedules.periodic_health(settings)
    assert health.expected_interval == 3 * HOUR and not health.overdue

    schedules.remove_schedule(settings, "s")
    assert schedules.list_schedules(settings) == []
    for call in (
        lambda: schedules.remove_schedule(settings, "s"),
        lambda: schedules.pause_schedule(settings, "s"),
        lambda: schedules.run_schedule(settings, "s"),
    ):
        with pytest.raises(ScheduleNotFound):
            call()


def test_run_now_enqueues_one_job(
    settings: Settings, sched_app: App, db: psycopg.Connection[Any]
) -> None:
    schedules.add_schedule(
        settings, sched_app, "s", "report", cron="0 0 1 1 *", args={"kind": "a"},
        paused=True,
    )  # fmt: skip
    result = schedules.run_schedule(settings, "s")
    row = db.execute(
        "SELECT task_name, args FROM procrastinate_jobs WHERE id = %s",
        (result.job_id,),
    ).fetchone()
    assert row == ("report", {"kind": "a"})
    [run] = schedules.list_runs(settings, "s")
    assert (run.trigger, run.job_id) == ("manual", result.job_id)


def _make_due(db: psycopg.Connection[Any], name: str, ago: datetime.timedelta) -> None:
    db.execute(
        "UPDATE pgjobs.schedules SET next_run_at = now() - %s WHERE name = %s",
        (ago, name),
    )


async def test_concurrent_tickers_enqueue_each_tick_once(
    settings: Settings, sched_app: App, db: psycopg.Connection[Any]
) -> None:
    schedules.add_schedule(
        settings, sched_app, "s", "report", cron="* * * * * *", args={"kind": "a"}
    )
    _make_due(db, "s", datetime.timedelta(seconds=3))
    apps = [App(settings=settings) for _ in range(4)]
    for app in apps:
        app.tasks = sched_app.tasks
        await app.open_async()
    try:
        results = await asyncio.gather(*(schedules.run_due_schedules(a) for a in apps))
    finally:
        for app in apps:
            await app.close_async()
    enqueued = [tick for result in results for tick in result]
    assert len(enqueued) >= 3  # ticks of the last ~3 s, all within the window
    assert len({tick.tick_at for tick in enqueued}) == len(enqueued)
    assert count(db, "SELECT count(*) FROM procrastinate_jobs") == len(enqueued)
    assert sum(1 for result in results if result) == 1  # one winner


@pytest.mark.parametrize(
    ("policy", "expected"), [("skip", 0), ("once", 1), ("all", 5), ("all-3", 3)]
)
async def test_missed_runs_policy(
    settings: Settings,
    sched_app: App,
    db: psycopg.Connection[Any],
    policy: str,
    expected: int,
) -> None:
    missed_runs, _, cap = policy.partition("-")
    schedules.add_schedule(
        settings,
        sched_app,
        "s",
        "report",
        interval_seconds=3600,
        args={"kind": "a"},
        missed_runs=missed_runs,  # type: ignore[arg-type]
        max_catch_up=int(cap or 100),
    )
    # The last tick the workers saw was 5 hours ago: 5 ticks were missed (the
    # one of this hour is more than the window late, unless on the hour).
    db.execute(
        "UPDATE pgjobs.schedules SET next_run_at = date_trunc('hour', now()) "
        "- interval '4 hours'"
    )
    async with sched_app.open_async():
        if count(db, "SELECT now() - date_trunc('hour', now())") < (
            datetime.timedelta(seconds=10)
        ):
            pytest.skip("too close to the hour for a deterministic count")
        enqueued = await schedules.run_due_schedules(sched_app)
        assert await schedules.run_due_schedules(sched_app) == []
    assert len(enqueued) == expected
    assert {tick.trigger for tick in enqueued} <= {"catch_up"}
    assert count(db, "SELECT count(*) FROM procrastinate_jobs") == expected
    next_run = schedules.get_schedule(settings, "s").next_run_at
    assert next_run > datetime.datetime.now(datetime.UTC)


async def test_outcomes_and_overdue_in_periodic_health(
    settings: Settings, sched_app: App, db: psycopg.Connection[Any]
) -> None:
    schedules.add_schedule(
        settings, sched_app, "good", "report", cron="* * * * * *", args={"kind": "a"}
    )
    schedules.add_schedule(settings, sched_app, "bad", "broken", cron="* * * * *")
    schedules.run_schedule(settings, "good")
    schedules.run_schedule(settings, "bad")
    await run_worker(sched_app)
    health = {row.name: row for row in schedules.periodic_health(settings)}
    assert health["good"].last_success_at is not None
    assert health["good"].last_failure_at is None
    assert health["bad"].last_failure_at is not None
    assert health["bad"].last_error == "ValueError: no data"
    assert not health["good"].overdue and not health["bad"].overdue
    assert schedules.overdue(settings) == []

    # Time passes (set in SQL): 'good' (every second, grace 60 s) succeeded
    # 2 minutes ago; 'bad' (every minute) never succeeded in 3 minutes.
    db.execute(
        "UPDATE pgjobs.schedules SET last_success_at = now() - interval '2 min', "
        "active_since = now() - interval '1 hour' WHERE name = 'good'"
    )
    db.execute(
        "UPDATE pgjobs.schedules SET active_since = now() - interval '3 min' "
        "WHERE name = 'bad'"
    )
    assert sorted(row.name for row in schedules.overdue(settings)) == ["bad", "good"]
    rows = db.execute(
        "SELECT name, overdue FROM pgjobs.periodic_health ORDER BY name"
    ).fetchall()
    assert rows == [("bad", True), ("good", True)]
    schedules.pause_schedule(settings, "bad")
    assert [row.name for row in schedules.overdue(settings)] == ["good"]
    schedules.set_expected_interval(settings, "good", datetime.timedelta(hours=1))
    assert schedules.overdue(settings) == []


async def test_code_periodic_tasks_are_registered_with_health(
    settings: Settings, db: psycopg.Connection[Any]
) -> None:
    app = App(settings=settings)

    @app.periodic(cron="0 9 * * 1-5", periodic_id="morning")
    @app.task(name="digest")
    def digest(timestamp: int) -> None:
        pass

    async with app.open_async():
        await schedules.register_periodic_tasks(app)
    [row] = schedules.periodic_health(settings)
    assert (row.name, row.kind, row.task_name) == ("morning", "code", "digest")
    assert row.expected_interval == datetime.timedelta(days=3)
    assert not row.overdue

    # A periodic job (deferred with its timestamp) finishing records success.
    app.enqueue(db, "digest", {"timestamp": 1})
    await run_worker(app)
    [row] = schedules.periodic_health(settings)
    assert row.last_success_at is not None

    db.execute(
        "UPDATE pgjobs.periodic_tasks SET last_success_at = now() - interval '4 days',"
        " registered_at = now() - interval '30 days'"
    )
    assert [r.name for r in schedules.overdue(settings)] == ["morning"]
    schedules.remove_schedule(settings, "morning")
    assert schedules.periodic_health(settings) == []


def test_monitoring_health_reads_periodic_health(
    settings: Settings, sched_app: App, db: psycopg.Connection[Any]
) -> None:
    schedules.add_schedule(
        settings, sched_app, "nightly", "report", cron="0 0 * * *", args={"kind": "n"}
    )
    db.execute("UPDATE pgjobs.schedules SET active_since = now() - interval '3 days'")
    rows = db.execute(
        "SELECT subject, severity FROM pgjobs.health WHERE \"check\" = 'overdue_schedule'"
    ).fetchall()
    assert rows == [("schedule nightly", "critical")]


def test_a_lagging_worker_cannot_defer_a_past_periodic_tick_again(
    db: psycopg.Connection[Any],
) -> None:
    """procrastinate keeps only the newest tick per periodic task: a worker
    whose deferrer lags behind another's used to defer a replaced tick again
    (seen as a tick run twice by two workers on a loaded box)."""

    def defer(tick: int) -> int | None:
        job_id: int | None = count(
            db,
            "SELECT procrastinate_defer_periodic_job_v2("
            "'default', NULL, NULL, 'sched.tick', 0, '', %s, '{}'::jsonb)",
            tick,
        )
        db.commit()
        return job_id

    first = defer(100)
    assert first is not None
    assert defer(100) is None  # the same tick: procrastinate's own conflict
    assert defer(101) is not None  # the next tick replaces the first
    assert defer(100) is None  # the lagging worker's tick 100 again
    assert defer(99) is None
    assert defer(102) is not None
    assert (
        count(
            db, "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'sched.tick'"
        )
        == 3
    )
