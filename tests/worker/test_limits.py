"""Fleet-wide limits: declaring them, and the claim (pgjobs.fetch_jobs) that
enforces them in SQL, against real PostgreSQL."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest

import pgjobs
from pgjobs import App, InvalidLimit, Settings
from pgjobs.admin import jobs as jobs_admin
from pgjobs.worker import limits
from tests.support.factories import add_job, add_worker

pytestmark = pytest.mark.timeout(60)


def make_app() -> App:
    return App(settings=Settings(database_url="postgresql://unused/x", _env_file=None))


# -- declaring ---------------------------------------------------------------


def test_a_task_declares_its_limits() -> None:
    app = make_app()

    @app.task(
        name="api.call",
        rate_limit="10/s",
        concurrency_limit=20,
        limit_key="tenant_id",
        key_concurrency_limit=5,
        key_rate_limit="100/m",
    )
    def call(tenant_id: str) -> None: ...

    assert call.limits == (
        limits.Limit("api.call", "task", "concurrency", 20),
        limits.Limit("api.call", "task", "rate", 10, 1.0),
        limits.Limit("api.call", "key", "concurrency", 5, key_arg="tenant_id"),
        limits.Limit("api.call", "key", "rate", 100, 60.0, key_arg="tenant_id"),
    )


@pytest.mark.parametrize(
    ("text", "amount", "period"),
    [
        ("10/s", 10, 1.0),
        ("100/m", 100, 60.0),
        ("5/min", 5, 60.0),
        ("1/h", 1, 3600.0),
        (" 3 / 10s ", 3, 10.0),
        ("2/0.5s", 2, 0.5),
    ],
)
def test_rates_parse(text: str, amount: int, period: float) -> None:
    assert limits.parse_rate(text) == limits.Rate(amount, period)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rate_limit": "ten per second"}, "must look like '10/s'"),
        ({"rate_limit": "5/week"}, "unknown unit 'week'"),
        ({"rate_limit": "0/s"}, "at least 1"),
        ({"rate_limit": "-1/s"}, "must look like"),
        ({"rate_limit": 10}, "must look like"),
        ({"concurrency_limit": 0}, "at least 1"),
        ({"concurrency_limit": -3}, "at least 1"),
        ({"concurrency_limit": "5"}, "whole number"),
        ({"concurrency_limit": True}, "whole number"),
        ({"key_concurrency_limit": 2}, "need limit_key"),
        ({"limit_key": "tenant_id"}, "needs key_concurrency_limit"),
        ({"limit_key": "nope", "key_concurrency_limit": 2}, "not one of its"),
        ({"limit_key": "tenant_id", "key_rate_limit": "1/fortnight"}, "unknown unit"),
    ],
)
def test_bad_limits_fail_at_decoration(options: dict[str, Any], message: str) -> None:
    app = make_app()
    with pytest.raises(InvalidLimit, match=message) as info:
        app.task(name="bad", **options)(lambda tenant_id: None)
    assert isinstance(info.value, pgjobs.PgjobsError)
    assert "bad" not in app.tasks


# -- the claim ---------------------------------------------------------------


def set_limit(
    conn: psycopg.Connection[Any],
    task: str,
    kind: str,
    amount: int,
    *,
    period_s: float | None = None,
    key_arg: str | None = None,
) -> None:
    conn.execute(
        "SELECT pgjobs.set_task_limit(%s, %s, %s, %s, %s, make_interval(secs => %s))",
        (task, "task" if key_arg is None else "key", kind, key_arg, amount, period_s),
    )
    conn.commit()


def claim(
    url: str, worker: int, limit: int = 10, start: int | None = None
) -> list[tuple[int, str, dict[str, Any]]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            "SELECT id, task_name, args FROM pgjobs.fetch_jobs(NULL, %s, %s, %s)",
            (worker, limit, start),
        ).fetchall()


def finish(conn: psycopg.Connection[Any], ids: list[int]) -> None:
    conn.execute(
        "UPDATE procrastinate_jobs SET status = 'succeeded' WHERE id = ANY(%s)", (ids,)
    )
    conn.commit()


def running(conn: psycopg.Connection[Any], task: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing'"
        " AND task_name = %s",
        (task,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def concurrent_claims(url: str, worker: int, claimers: int = 2) -> list[list[int]]:
    """``claimers`` claims at once (each on its own connection)."""
    barrier = threading.Barrier(claimers)
    results: list[list[int]] = [[] for _ in range(claimers)]
    conns = [psycopg.connect(url, autocommit=True) for _ in range(claimers)]

    def one(index: int) -> None:
        barrier.wait()
        rows = (
            conns[index]
            .execute("SELECT id FROM pgjobs.fetch_jobs(NULL, %s, 10)", (worker,))
            .fetchall()
        )
        results[index] = [row[0] for row in rows]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(claimers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    for conn in conns:
        conn.close()
    return results


def test_a_concurrency_limit_holds_under_concurrent_claimers(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    worker = add_worker(conn)
    set_limit(conn, "capped", "concurrency", 3)
    for _ in range(30):
        add_job(conn, task="capped")
    conn.commit()
    done = 0
    for _ in range(12):
        claimed = concurrent_claims(db_url, worker, claimers=3)
        assert running(conn, "capped") <= 3
        ids = [job for batch in claimed for job in batch]
        assert len(ids) == len(set(ids))
        # Finish one of the running jobs: one slot frees.
        doing = conn.execute(
            "SELECT min(id) FROM procrastinate_jobs WHERE status = 'doing'"
        ).fetchone()
        assert doing is not None
        if doing[0] is not None:
            finish(conn, [doing[0]])
            done += 1
    concurrent_claims(db_url, worker, claimers=3)
    assert running(conn, "capped") == 3
    assert done == 12


def test_per_key_concurrency_and_a_full_key_does_not_hold_back_others(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    worker = add_worker(conn)
    set_limit(conn, "tenant", "concurrency", 2, key_arg="tenant_id")
    for _ in range(50):
        add_job(conn, task="tenant", args='{"tenant_id": "big"}')
    small = [add_job(conn, task="tenant", args='{"tenant_id": "small"}')]
    small.append(add_job(conn, task="tenant", args='{"tenant_id": 7}'))
    conn.commit()
    first = claim(db_url, worker)
    keys = sorted(str(args["tenant_id"]) for _, _, args in first)
    assert keys == ["7", "big", "big", "small"]
    assert {job for job, _, _ in first} >= set(small)
    assert claim(db_url, worker) == []
    [why] = [
        jobs_admin.get_job(conn, job).waiting_reasons
        for (job,) in conn.execute(
            "SELECT min(id) FROM procrastinate_jobs WHERE status = 'todo'"
        ).fetchall()
    ]
    assert why == [
        "held back by its concurrency limit: 2 of 2 running for tenant"
        " tenant_id=big (`pgjobs limits list`)"
    ]


def test_a_rate_limit_is_a_sliding_window(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    worker = add_worker(conn)
    set_limit(conn, "rated", "rate", 3, period_s=1.0)
    for _ in range(12):
        add_job(conn, task="rated")
    add_job(conn, task="free")
    conn.commit()
    starts: list[float] = []
    deadline = time.monotonic() + 4.5
    while time.monotonic() < deadline:
        claimed = [job for job in claim(db_url, worker) if job[1] == "rated"]
        starts += [time.monotonic()] * len(claimed)
        time.sleep(0.1)
    # Never more than 3 in any 1 s window (a fixed window would let 6 in
    # across a boundary), and held-back jobs started as soon as allowed.
    for index, at in enumerate(starts):
        assert len([s for s in starts[index:] if s < at + 0.9]) <= 3
    assert len(starts) == 12
    assert conn.execute(
        "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'free'"
        " AND status = 'doing'"
    ).fetchone() == (1,)
    recorded = [
        row[0]
        for row in conn.execute(
            "SELECT extract(epoch FROM started_at) FROM pgjobs.limit_starts"
            " ORDER BY started_at"
        ).fetchall()
    ]
    for index, at in enumerate(recorded):
        assert len([s for s in recorded[index:] if s < at + 1]) <= 3


def test_the_claim_says_when_a_rate_held_job_may_start(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    worker = add_worker(conn)
    assert conn.execute("SELECT pgjobs.limits_next_start()").fetchone() == (None,)
    set_limit(conn, "rated", "rate", 2, period_s=2.0)
    for _ in range(3):
        add_job(conn, task="rated")
    conn.commit()
    assert len(claim(db_url, worker)) == 2
    row = conn.execute(
        "SELECT extract(epoch FROM pgjobs.limits_next_start() - clock_timestamp())"
    ).fetchone()
    assert row is not None and 1.5 < float(row[0]) <= 2.0
    [held] = conn.execute(
        "SELECT id FROM procrastinate_jobs WHERE status = 'todo'"
    ).fetchall()
    [reason] = jobs_admin.get_job(conn, held[0]).waiting_reasons
    assert reason.startswith(
        "held back by its rate limit: 2 of 2 starts in the last 2 s"
    )


def test_limited_jobs_are_not_prefetched_but_others_are(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    worker = add_worker(conn)
    set_limit(conn, "capped", "concurrency", 5)
    for _ in range(3):
        add_job(conn, task="free")
    conn.commit()
    # No limited job waiting: prefetch as usual (2 start, 1 prefetched).
    assert len(claim(db_url, worker, limit=3, start=2)) == 3
    started = conn.execute(
        "SELECT count(*) FROM procrastinate_events WHERE type = 'started'"
    ).fetchone()
    assert started == (2,)
    capped = [add_job(conn, task="capped") for _ in range(3)]
    add_job(conn, task="free")
    conn.commit()
    claimed = claim(db_url, worker, limit=4, start=2)
    assert [job for job, _, _ in claimed] == capped[:2]


def test_without_limits_the_claim_takes_its_old_path(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    worker = add_worker(conn)
    for _ in range(3):
        add_job(conn, task="free")
    conn.commit()
    assert len(claim(db_url, worker)) == 3
    assert conn.execute("SELECT count(*) FROM pgjobs.limit_slots").fetchone() == (0,)


def test_the_worker_role_may_claim_and_sync_limits(
    conn: psycopg.Connection[Any],
) -> None:
    worker = add_worker(conn)
    set_limit(conn, "capped", "concurrency", 1)
    add_job(conn, task="capped")
    conn.commit()
    conn.execute("SET ROLE pgjobs_worker")
    conn.execute("SELECT pgjobs.sync_declared_limits(ARRAY['other'], '[]'::jsonb)")
    claimed = conn.execute(
        "SELECT id FROM pgjobs.fetch_jobs(NULL, %s, 10)", (worker,)
    ).fetchall()
    assert len(claimed) == 1
    assert conn.execute("SELECT pgjobs.limits_next_start()").fetchone() == (None,)
    conn.rollback()


@pytest.mark.parametrize(
    ("kind", "period_s", "key_arg"),
    [
        ("rate", 10.0, None),
        ("rate", 10.0, "tenant_id"),
        ("concurrency", None, "tenant_id"),
    ],
)
def test_concurrent_claimers_never_exceed_a_limit(
    conn: psycopg.Connection[Any],
    db_url: str,
    kind: str,
    period_s: float | None,
    key_arg: str | None,
) -> None:
    worker = add_worker(conn)
    set_limit(conn, "limited", kind, 4, period_s=period_s, key_arg=key_arg)
    for n in range(40):
        add_job(conn, task="limited", args=f'{{"tenant_id": "t{n % 2}"}}')
    conn.commit()
    claimed = [
        job
        for _ in range(3)
        for batch in concurrent_claims(db_url, worker, 4)
        for job in batch
    ]
    assert len(claimed) == len(set(claimed))
    # Task-wide: 4 in all; per key: 4 for each of the 2 tenants.
    assert len(claimed) == (4 if key_arg is None else 8)


def test_per_key_claims_keep_the_priority_order(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    worker = add_worker(conn)
    set_limit(conn, "tenant", "concurrency", 1, key_arg="tenant_id")
    ids = {}
    for name, tenant, priority in [
        ("a-high", "a", 10),
        ("b", "b", 5),
        ("a-low", "a", 0),
        ("c", "c", 7),
        ("c-low", "c", -2147483648),
    ]:
        ids[name] = add_job(conn, task="tenant", args=f'{{"tenant_id": "{tenant}"}}')
        conn.execute(
            "UPDATE procrastinate_jobs SET priority = %s WHERE id = %s",
            (priority, ids[name]),
        )
    conn.commit()
    claimed = {job for job, _, _ in claim(db_url, worker)}
    assert claimed == {ids["a-high"], ids["c"], ids["b"]}
    finish(conn, [ids["a-high"], ids["c"]])
    claimed = {job for job, _, _ in claim(db_url, worker)}
    assert claimed == {ids["a-low"], ids["c-low"]}
