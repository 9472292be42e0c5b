"""Dead letters (R4): written with the failure, replayed once, purged, alerted."""

from __future__ import annotations

import datetime
import logging
from typing import Any

import psycopg
import pytest

from pgjobs import (
    App,
    DeadLetter,
    DeadLetterNotFound,
    InvalidJobOptions,
    RetryPolicy,
    Settings,
    get_job,
)
from pgjobs.admin import jobs
from pgjobs.failures import dead_letters
from tests.support import one, run_worker


def start_job(db: psycopg.Connection[Any], task: str = "t.x") -> int:
    """A job in 'doing', as a worker would have fetched it."""
    job_id: int = one(
        db,
        "INSERT INTO procrastinate_jobs (queue_name, task_name, args, status) "
        "VALUES ('q', %s, '{\"n\": 1}', 'doing') RETURNING id",
        task,
    )
    return job_id


def test_any_failure_path_writes_exactly_one_letter(
    db: psycopg.Connection[Any],
) -> None:
    # procrastinate's own finish function, outside pgjobs' worker code.
    plain = start_job(db)
    db.execute("SELECT procrastinate_finish_job_v1(%s, 'failed', false)", (plain,))
    # pgjobs' function: error row + failure + letter.
    ours = start_job(db)
    db.execute(
        "SELECT * FROM pgjobs.fail_job_attempt(%s, 'IOError', 'disk full', NULL, "
        "NULL, NULL, NULL, NULL, false, NULL)",
        (ours,),
    )
    letters = {letter.job_id: letter for letter in dead_letters.list_dead_letters(db)}
    assert set(letters) == {plain, ours}
    assert letters[plain].error_type == "Unknown"
    assert (letters[ours].error_type, letters[ours].error_message) == (
        "IOError",
        "disk full",
    )
    assert letters[ours].attempts == 1 and letters[ours].args == {"n": 1}


def test_failure_and_letter_commit_or_roll_back_together(
    db_url: str, db: psycopg.Connection[Any]
) -> None:
    job_id = start_job(db)
    # Rolled back: neither the failure nor the letter nor the error row.
    with psycopg.connect(db_url) as tx:
        tx.execute(
            "SELECT * FROM pgjobs.fail_job_attempt(%s, 'E', '', NULL, NULL, NULL, "
            "NULL, NULL, false, NULL)",
            (job_id,),
        )
        assert one(tx, "SELECT count(*) FROM pgjobs.dead_letters") == 1
        tx.rollback()
    assert (
        one(db, "SELECT status::text FROM procrastinate_jobs WHERE id = %s", job_id)
        == "doing"
    )
    assert one(db, "SELECT count(*) FROM pgjobs.dead_letters") == 0
    assert one(db, "SELECT count(*) FROM pgjobs.job_errors") == 0
    # The letter cannot be written: the failure does not happen either.
    db.execute(
        "ALTER TABLE pgjobs.dead_letters ADD CONSTRAINT refuse CHECK (task_name <> 't.x')"
    )
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute(
            "SELECT * FROM pgjobs.fail_job_attempt(%s, 'E', '', NULL, NULL, NULL, "
            "NULL, NULL, false, NULL)",
            (job_id,),
        )
    assert (
        one(db, "SELECT status::text FROM procrastinate_jobs WHERE id = %s", job_id)
        == "doing"
    )
    assert one(db, "SELECT count(*) FROM pgjobs.job_errors") == 0


async def test_every_failed_job_has_its_letter(
    app: App, db: psycopg.Connection[Any]
) -> None:
    @app.task(name="t.mixed", retry=RetryPolicy(max_attempts=2, base_delay=0))
    def mixed(n: int) -> None:
        if n % 3:
            raise ValueError(f"bad {n}")

    app.enqueue_many(db, "t.mixed", [{"n": n} for n in range(12)])
    await run_worker(app)
    failed = one(db, "SELECT count(*) FROM procrastinate_jobs WHERE status = 'failed'")
    assert failed == 8
    mismatched = one(
        db,
        "SELECT count(*) FROM procrastinate_jobs j FULL JOIN pgjobs.dead_letters l "
        "ON l.job_id = j.id AND j.status = 'failed' "
        "WHERE (j.status = 'failed') IS DISTINCT FROM (l.id IS NOT NULL) "
        "OR l.attempts <> j.attempts",
    )
    assert mismatched == 0
    assert one(db, "SELECT count(*) FROM pgjobs.job_errors") == 16


async def test_alert_hook_gets_each_new_letter(
    settings: Settings, db: psycopg.Connection[Any]
) -> None:
    seen: list[DeadLetter] = []
    app = App(settings=settings, on_dead_letter=seen.append)

    @app.task(name="t.bad")
    def bad(n: int) -> None:
        raise RuntimeError(f"bad {n}")

    ids = app.enqueue_many(db, "t.bad", [{"n": 1}, {"n": 2}])
    await run_worker(app)
    assert sorted(letter.job_id for letter in seen) == sorted(ids)  # type: ignore[type-var]
    assert {letter.error_message for letter in seen} == {"bad 1", "bad 2"}


async def test_default_hook_logs_a_warning_and_a_broken_hook_is_harmless(
    settings: Settings, db: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    app = App(settings=settings)

    @app.task(name="t.bad")
    def bad() -> None:
        raise RuntimeError("nope")

    job_id = app.enqueue(db, "t.bad")
    await run_worker(app)
    [warning] = [
        r for r in caplog.records if getattr(r, "action", None) == "dead_letter"
    ]
    assert warning.levelno == logging.WARNING
    assert (
        f"job {job_id} (t.bad) is dead after 1 attempt(s): RuntimeError: nope"
        in warning.getMessage()
    )

    def broken(letter: DeadLetter) -> None:
        raise OSError("pager down")

    app2 = App(settings=settings, on_dead_letter=broken)
    app2.task(name="t.bad")(bad.func)
    other = app2.enqueue(db, "t.bad")
    await run_worker(app2)
    assert get_job(db, other).status == "failed"
    assert len(dead_letters.list_dead_letters(db)) == 2
    assert any(
        getattr(r, "action", None) == "dead_letter_hook_error" for r in caplog.records
    )


async def test_replay_one_letter_once(app: App, db: psycopg.Connection[Any]) -> None:
    should_fail = True

    @app.task(name="t.flaky", queue="sync")
    def flaky(customer_id: int) -> None:
        if should_fail:
            raise ConnectionError("crm down")

    job_id = app.enqueue(db, "t.flaky", {"customer_id": 9})
    await run_worker(app)
    [letter] = dead_letters.list_dead_letters(db, replayed=False)

    replayed = dead_letters.replay_dead_letter(db, letter.id)
    assert replayed.letter_id == letter.id and replayed.job_id != job_id
    new_job = get_job(db, replayed.job_id)
    assert (new_job.task_name, new_job.queue_name, new_job.args, new_job.status) == (
        "t.flaky",
        "sync",
        {"customer_id": 9},
        "todo",
    )
    after = dead_letters.get_dead_letter(db, letter.id)
    assert after.replay_job_id == replayed.job_id and after.replayed_at is not None

    with pytest.raises(InvalidJobOptions, match="already replayed"):
        dead_letters.replay_dead_letter(db, letter.id)
    assert dead_letters.replay_dead_letters(db, all=True) == []
    assert one(db, "SELECT count(*) FROM procrastinate_jobs") == 2

    should_fail = False
    await run_worker(app)
    assert get_job(db, replayed.job_id).status == "succeeded"
    assert dead_letters.list_dead_letters(db, replayed=False) == []


def test_concurrent_replays_never_enqueue_twice(
    db_url: str, db: psycopg.Connection[Any]
) -> None:
    for _ in range(5):
        db.execute(
            "SELECT procrastinate_finish_job_v1(%s, 'failed', false)", (start_job(db),)
        )
    with psycopg.connect(db_url) as first:
        won = dead_letters.replay_dead_letters(first, all=True)  # not committed yet
        assert len(won) == 5
        # A second replay while the first holds the letters: skips them.
        assert dead_letters.replay_dead_letters(db_url, all=True) == []
        first.commit()
    assert dead_letters.replay_dead_letters(db_url, all=True) == []
    assert one(db, "SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo'") == 5
    assert one(db, "SELECT count(DISTINCT replay_job_id) FROM pgjobs.dead_letters") == 5


def test_replay_filters_and_purge(db: psycopg.Connection[Any]) -> None:
    def letter(task: str, queue: str, error: str, age_days: float) -> int:
        return one(
            db,
            "INSERT INTO pgjobs.dead_letters (job_id, task_name, queue_name, args, "
            "attempts, error_type, first_failed_at, last_failed_at, created_at) "
            "VALUES (0, %s, %s, '{}', 1, %s, now() - %s * interval '1 day', "
            "now() - %s * interval '1 day', now() - %s * interval '1 day') RETURNING id",
            task,
            queue,
            error,
            age_days,
            age_days,
            age_days,
        )

    a = letter("mail.send", "mail", "SMTPError", 0)
    b = letter("mail.send", "mail", "ValueError", 3)
    c = letter("crm.sync", "crm", "SMTPError", 10)
    d = letter("crm.sync", "crm", "ConnectionError", 40)

    with pytest.raises(InvalidJobOptions, match="say which"):
        dead_letters.replay_dead_letters(db)
    by_type = dead_letters.replay_dead_letters(db, error_type="SMTPError", queue="mail")
    assert [r.letter_id for r in by_type] == [a]
    recent = dead_letters.replay_dead_letters(db, since=datetime.timedelta(days=5))
    assert [r.letter_id for r in recent] == [b]
    old = dead_letters.list_dead_letters(
        db, until=datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=5)
    )
    assert {x.id for x in old} == {c, d}
    assert [
        x.id
        for x in dead_letters.list_dead_letters(
            db, task="crm.sync", error_type="SMTPError"
        )
    ] == [c]

    assert dead_letters.purge_dead_letters(db, datetime.timedelta(days=30)) == 1  # d
    assert (
        dead_letters.purge_dead_letters(
            db, datetime.timedelta(days=1), replayed_only=True
        )
        == 1
    )  # b
    assert {x.id for x in dead_letters.list_dead_letters(db)} == {a, c}
    with pytest.raises(DeadLetterNotFound):
        dead_letters.get_dead_letter(db, d)


async def test_retrying_a_failed_job_marks_its_letter(
    app: App, db: psycopg.Connection[Any]
) -> None:
    fail = True

    @app.task(name="t.once")
    def once_task() -> None:
        if fail:
            raise ValueError("first time")

    job_id = app.enqueue(db, "t.once")
    await run_worker(app)
    assert jobs.retry_job(db, job_id) == job_id
    [letter] = dead_letters.list_dead_letters(db)
    assert letter.replay_job_id == job_id and letter.replayed_at is not None
    fail = False
    await run_worker(app)
    status = get_job(db, job_id)
    assert (status.status, status.attempts) == ("succeeded", 2)
