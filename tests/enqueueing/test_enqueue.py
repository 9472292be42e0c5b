"""Enqueueing inside the caller's transaction (psycopg sync/async, SQLAlchemy)."""

from __future__ import annotations

import datetime
from typing import Any

import psycopg
import pytest
import sqlalchemy
from pydantic import BaseModel
from sqlalchemy.orm import Session

from pgjobs import AlreadyEnqueued, App, InvalidJobOptions, InvalidPayload, TaskNotFound
from pgjobs.db.schema import engine_for


class Order(BaseModel):
    order_id: int
    email: str


def define_tasks(app: App) -> dict[str, Any]:
    @app.task(name="confirm", queue="emails", priority=3)
    def confirm(order_id: int) -> None: ...

    @app.task(name="typed")
    def typed(order: Order, when: datetime.datetime | None = None) -> None: ...

    return {"confirm": confirm, "typed": typed}


def jobs(url: str) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute(
            "SELECT id, task_name, queue_name, priority, lock, queueing_lock, args, "
            "status::text, scheduled_at FROM procrastinate_jobs ORDER BY id"
        ).fetchall()


def test_commit_makes_the_job_visible(app: App, db_url: str) -> None:
    define_tasks(app)
    with psycopg.connect(db_url) as conn:
        conn.execute("CREATE TABLE orders (id int)")
        conn.execute("INSERT INTO orders VALUES (7)")
        job_id = app.enqueue(conn, "confirm", {"order_id": 7})
        assert jobs(db_url) == []  # not visible to others before commit
    [job] = jobs(db_url)
    assert job["id"] == job_id
    assert (job["task_name"], job["queue_name"], job["priority"]) == (
        "confirm",
        "emails",
        3,
    )
    assert job["args"] == {"order_id": 7} and job["status"] == "todo"


def test_rollback_leaves_no_job(app: App, db_url: str) -> None:
    define_tasks(app)
    with psycopg.connect(db_url) as conn:
        with pytest.raises(RuntimeError), conn.transaction():
            app.enqueue(conn, "confirm", {"order_id": 1})
            raise RuntimeError("business failure")
        conn.commit()
    assert jobs(db_url) == []


async def test_async_connection(app: App, db_url: str) -> None:
    define_tasks(app)
    async with await psycopg.AsyncConnection.connect(db_url) as aconn:
        async with aconn.transaction():
            await app.enqueue_async(aconn, "confirm", {"order_id": 1})
        with pytest.raises(RuntimeError):
            async with aconn.transaction():
                await app.enqueue_async(aconn, "confirm", {"order_id": 2})
                raise RuntimeError
        ids = await app.enqueue_many_async(
            aconn, "confirm", [{"order_id": 3}, {"order_id": 4}]
        )
        await aconn.commit()
    assert [j["args"]["order_id"] for j in jobs(db_url)] == [1, 3, 4]
    assert len(ids) == 2


def test_sqlalchemy_session(app: App, db_url: str) -> None:
    define_tasks(app)
    engine = engine_for(db_url)
    with Session(engine) as session:
        session.execute(sqlalchemy.text("CREATE TABLE orders (id int)"))
        session.execute(sqlalchemy.text("INSERT INTO orders VALUES (1)"))
        app.enqueue(session, "confirm", {"order_id": 1})
        session.commit()
        session.execute(sqlalchemy.text("INSERT INTO orders VALUES (2)"))
        app.enqueue(session, "confirm", {"order_id": 2})
        session.rollback()
    with engine.connect() as connection:
        app.enqueue(connection, "confirm", {"order_id": 3})
        connection.commit()
    assert [j["args"]["order_id"] for j in jobs(db_url)] == [1, 3]
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT id FROM orders").fetchall() == [(1,)]


def test_options(app: App, db_url: str) -> None:
    define_tasks(app)
    at = datetime.datetime(2031, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    with psycopg.connect(db_url) as conn:
        app.enqueue(
            conn, "confirm", {"order_id": 1}, queue="other", priority=-5, lock="order-1"
        )
        app.enqueue(conn, "confirm", {"order_id": 2}, run_at=at)
        before = datetime.datetime.now(datetime.UTC)
        app.enqueue(conn, "confirm", {"order_id": 3}, delay=3600)
    first, second, third = jobs(db_url)
    assert (first["queue_name"], first["priority"], first["lock"]) == (
        "other",
        -5,
        "order-1",
    )
    assert second["scheduled_at"] == at
    delay = third["scheduled_at"] - before
    assert datetime.timedelta(minutes=59) < delay < datetime.timedelta(minutes=61)


def test_queueing_lock_duplicate_refused_or_ignored(app: App, db_url: str) -> None:
    define_tasks(app)
    with psycopg.connect(db_url) as conn:
        assert (
            app.enqueue(conn, "confirm", {"order_id": 1}, queueing_lock="o1")
            is not None
        )
        with pytest.raises(AlreadyEnqueued, match="o1"):
            app.enqueue(conn, "confirm", {"order_id": 1}, queueing_lock="o1")
        # The caller's transaction is still usable: nothing was aborted.
        assert (
            app.enqueue(
                conn,
                "confirm",
                {"order_id": 1},
                queueing_lock="o1",
                on_duplicate="ignore",
            )
            is None
        )
        ids = app.enqueue_many(
            conn,
            "confirm",
            [{"order_id": 2}, {"order_id": 3}],
            queueing_lock="o2",
            on_duplicate="ignore",
        )
        assert ids[0] is not None and ids[1] is None
    assert [j["args"]["order_id"] for j in jobs(db_url)] == [1, 2]


def test_procrastinate_style_defer_uses_the_same_path(app: App, db_url: str) -> None:
    tasks = define_tasks(app)
    with psycopg.connect(db_url) as conn:
        tasks["confirm"].configure(connection=conn, queueing_lock="x").defer(order_id=5)
        with pytest.raises(AlreadyEnqueued):
            tasks["confirm"].configure(connection=conn, queueing_lock="x").defer(
                order_id=5
            )
        with pytest.raises(InvalidPayload):
            tasks["confirm"].configure(connection=conn).defer(order_id="five")
    assert [j["args"] for j in jobs(db_url)] == [{"order_id": 5}]


def test_bulk_enqueue_thousands_in_one_transaction(app: App, db_url: str) -> None:
    define_tasks(app)
    with psycopg.connect(db_url) as conn:
        ids = app.enqueue_many(conn, "confirm", [{"order_id": i} for i in range(5000)])
        conn.rollback()
        assert len(ids) == 5000
        assert jobs(db_url) == []
        ids = app.enqueue_many(conn, "confirm", [{"order_id": i} for i in range(5000)])
        conn.commit()
    rows = jobs(db_url)
    assert [r["id"] for r in rows] == ids
    assert [r["args"]["order_id"] for r in rows] == list(range(5000))


def test_bulk_enqueue_keeps_options_events_and_one_notify_per_queue(
    app: App, db_url: str
) -> None:
    define_tasks(app)
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute('LISTEN "procrastinate_queue_v1#other"')
        # A worker waits (pgjobs.worker.wakeups): enqueues notify.
        listener.execute("SELECT pgjobs.wakeups_arm()")
        with psycopg.connect(db_url) as conn:
            ids = app.enqueue_many(
                conn,
                "confirm",
                [{"order_id": i} for i in range(3)],
                queue="other",
                priority=-7,
                lock="tenant-1",
                delay=60,
            )
        notifies = list(listener.notifies(timeout=1, stop_after=2))
    rows = jobs(db_url)
    assert [r["id"] for r in rows] == ids
    assert {
        (r["queue_name"], r["priority"], r["lock"], r["queueing_lock"]) for r in rows
    } == {("other", -7, "tenant-1", None)}
    assert len({r["scheduled_at"] for r in rows}) == 1
    assert rows[0]["scheduled_at"] > datetime.datetime.now(datetime.UTC)
    with psycopg.connect(db_url) as conn:
        events = conn.execute(
            "SELECT job_id, type::text FROM procrastinate_events ORDER BY id"
        ).fetchall()
    # procrastinate's scheduled-event trigger adds 'scheduled' for delayed jobs.
    assert [e for e in events if e[1] == "deferred"] == [(i, "deferred") for i in ids]
    assert len(notifies) == 1


def test_typed_payloads(app: App, db_url: str) -> None:
    define_tasks(app)
    with psycopg.connect(db_url) as conn:
        app.enqueue(conn, "typed", {"order": Order(order_id=1, email="a@b.c")})
        app.enqueue(conn, "typed", {"order": {"order_id": "2", "email": "d@e.f"}})
    assert [j["args"] for j in jobs(db_url)] == [
        {"order": {"order_id": 1, "email": "a@b.c"}},
        {"order": {"order_id": 2, "email": "d@e.f"}},
    ]


@pytest.mark.parametrize(
    ("task", "payload", "message"),
    [
        ("confirm", {"order_id": "seven"}, "argument order_id"),
        ("confirm", {}, "missing argument(s) order_id"),
        ("confirm", {"order_id": 1, "extra": 2}, "unexpected argument(s) extra"),
        ("typed", {"order": {"order_id": 1}}, "argument order.email"),
        ("typed", {"order": {"order_id": 1, "email": "a\x00b"}}, "NUL"),
        ("typed", {"order": {"order_id": 1, "email": "x" * 1_100_000}}, "byte limit"),
    ],
)
def test_bad_payload_is_refused_and_nothing_written(
    app: App, db_url: str, task: str, payload: dict[str, Any], message: str
) -> None:
    define_tasks(app)
    with psycopg.connect(db_url) as conn:
        with pytest.raises(InvalidPayload) as info:
            app.enqueue(conn, task, payload)
        assert message in str(info.value)
        assert "\n" not in str(info.value)
        conn.commit()
    assert jobs(db_url) == []


def test_non_json_argument_is_refused(app: App, db_url: str) -> None:
    @app.task(name="loose")
    def loose(value: Any) -> None: ...

    with (
        psycopg.connect(db_url) as conn,
        pytest.raises(InvalidPayload, match="not JSON-serialisable"),
    ):
        app.enqueue(conn, "loose", {"value": object()})


@pytest.mark.parametrize(
    "options",
    [
        {"run_at": datetime.datetime(2030, 1, 1)},  # naive
        {"delay": -1},
        {"delay": 1, "run_at": datetime.datetime.now(datetime.UTC)},
        {"queue": "q" * 129},
        {"queue": ""},
    ],
)
def test_bad_options_are_refused(
    app: App, db_url: str, options: dict[str, Any]
) -> None:
    define_tasks(app)
    with psycopg.connect(db_url) as conn, pytest.raises(InvalidJobOptions):
        app.enqueue(conn, "confirm", {"order_id": 1}, **options)
    assert jobs(db_url) == []


def test_unknown_task_and_wrong_connection(app: App, db_url: str) -> None:
    define_tasks(app)
    with psycopg.connect(db_url) as conn, pytest.raises(TaskNotFound):
        app.enqueue(conn, "nope", {})
    with pytest.raises(InvalidJobOptions, match="cannot enqueue on a str"):
        app.enqueue("postgresql://x", "confirm", {"order_id": 1})
