"""pgjobs behind PgBouncer, short of connections, and refused by the database.

Real PgBouncer (Debian's ``/usr/sbin/pgbouncer``, started by
``faults.pgbouncer``) in front of the test server; the tests that need it
skip when it is missing, and fail instead when
``PGJOBS_TEST_REQUIRE_PGBOUNCER=1`` (CI installs it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import psycopg_pool
import pytest

from faults import pgbouncer, scenarios
from faults.cluster import Cluster
from pgjobs.db import connections
from pgjobs.errors import DatabaseUnavailable
from tests.support import need_pgbouncer, run_cli, wait_for

POLLING_LINE = "LISTEN/NOTIFY does not reach this worker"
LISTEN_LINE = "new jobs wake this worker by LISTEN/NOTIFY"


@pytest.fixture
def bouncer(db_url: str) -> Iterator[pgbouncer.PgBouncer]:
    """Transaction-mode PgBouncer in front of a fresh migrated database."""
    need_pgbouncer()
    scenarios.prepare(db_url)
    with pgbouncer.PgBouncer(db_url, mode="transaction", pool_size=6) as running:
        yield running


def _count(url: str, query: str, *params: Any) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
        return int(row[0]) if row else 0


def _statuses(url: str, ids: list[int]) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return dict(
            conn.execute(
                "SELECT status::text, count(*) FROM procrastinate_jobs"
                " WHERE id = ANY(%s) GROUP BY 1",
                [ids],
            ).fetchall()
        )


def _listening_on_pooled_servers(bouncer: pgbouncer.PgBouncer) -> list[str]:
    """Channels any of the pooler's server connections LISTENs on: one
    transaction per server connection, all open at once, so each runs on a
    server connection of its own and every one of them is looked at."""
    servers = max(1, len(bouncer.show("SERVERS")))
    conns = [
        psycopg.connect(bouncer.url, prepare_threshold=None) for _ in range(servers)
    ]
    try:
        channels = []
        for conn in conns:  # BEGIN implicitly: each pins one server connection
            channels += [
                r[0] for r in conn.execute("SELECT pg_listening_channels()").fetchall()
            ]
        return channels
    finally:
        for conn in conns:
            conn.close()


# -- prepared statements ------------------------------------------------------


def test_prepared_statements_off_unless_turned_on(db_url: str) -> None:
    with connections.connect(db_url) as conn:
        assert conn.prepare_threshold is None
    # The embedded server's URL has a query (?host=...); an external one may not.
    sep = "&" if "?" in db_url else "?"
    with connections.connect(db_url + sep + "prepare_threshold=0") as conn:
        assert conn.prepare_threshold == 0
        assert conn.execute("SELECT 1").fetchone() == (1,)
    info = psycopg.conninfo.make_conninfo(**psycopg.conninfo.conninfo_to_dict(db_url))
    with connections.connect(f"{info} prepare_threshold=3") as conn:
        assert conn.prepare_threshold == 3
    with pytest.raises(DatabaseUnavailable, match="prepare_threshold must be"):
        connections.connect(db_url + sep + "prepare_threshold=often")
    # The admin commands take the URL as libpq users write it.
    result = run_cli("stats", "--json", db_url=db_url + sep + "prepare_threshold=0")
    assert result.returncode == 0, result.stderr


def test_parallel_enqueuers_through_transaction_mode(
    bouncer: pgbouncer.PgBouncer,
) -> None:
    """4 enqueuers x 100 transactions of varying shapes (the bind that once
    went to another client's prepared statement needs different ones)."""
    from faults.app import app

    failures: list[str] = []
    ids: list[int] = []

    def enqueuer(k: int) -> None:
        try:
            with connections.connect(bouncer.url) as conn:
                for i in range(100):
                    batch = [{"n": k * 1000 + i * 10 + j} for j in range(1 + i % 3)]
                    if i % 2:
                        got = app.enqueue_many(conn, "faults.work", batch)
                    else:
                        got = [app.enqueue(conn, "faults.work", batch[0], priority=1)]
                    conn.commit()
                    ids.extend(g for g in got if g is not None)
        except Exception as exc:  # collected: the test reports them
            failures.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=enqueuer, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(ids) == _count(
        bouncer.url, "SELECT count(*) FROM procrastinate_jobs WHERE id = ANY(%s)", ids
    )
    assert len(ids) == 4 * (50 + sum(1 + i % 3 for i in range(1, 100, 2)))


# -- workers behind transaction mode -------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_worker_behind_transaction_mode_polls_runs_everything_leaves_nothing(
    bouncer: pgbouncer.PgBouncer, db_url: str
) -> None:
    ids = scenarios.enqueue(db_url, 300, ms=5)
    with scenarios.workers(
        bouncer.url, 1, 8, PGJOBS_POOL_SIZE="4", PGJOBS_POLL_INTERVAL="0.5"
    ) as group:
        scenarios.wait_finished(db_url, ids, timeout=120, during=group.check_alive)
        # Idle: a new job is found by the next poll.
        began = time.monotonic()
        [late] = scenarios.enqueue(db_url, 1, start=1000)
        scenarios.wait_finished(db_url, [late], timeout=10)
        idle_latency = time.monotonic() - began
    assert group.exited == []
    assert _statuses(db_url, [*ids, late]) == {"succeeded": 301}
    log = group.log_text()
    assert log.count(POLLING_LINE) == 1, log
    assert "polling for new jobs every 0.5 s" in log
    assert group.error_lines() == []
    assert idle_latency < 3.0
    assert _listening_on_pooled_servers(bouncer) == []


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_listen_database_url_wakes_the_worker_at_once(
    bouncer: pgbouncer.PgBouncer, db_url: str
) -> None:
    with scenarios.workers(
        bouncer.url,
        1,
        4,
        PGJOBS_LISTEN_DATABASE_URL=db_url,
        PGJOBS_POLL_INTERVAL="60",  # a poll cannot explain a quick start
        PGJOBS_LOG_LEVEL="INFO",
    ) as group:
        wait_for(lambda: LISTEN_LINE in group.log_text(), 30, "the LISTEN line")
        time.sleep(0.5)
        latencies = []
        for n in range(3):
            began = time.monotonic()
            ids = scenarios.enqueue(db_url, 1, start=n)
            scenarios.wait_finished(db_url, ids, timeout=20)
            latencies.append(time.monotonic() - began)
        direct_listeners = _count(
            db_url,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            "   AND query ILIKE 'LISTEN%%' AND pid <> pg_backend_pid()",
        )
    assert max(latencies) < 2.0, latencies
    assert direct_listeners == 1  # one LISTEN connection for the process
    assert POLLING_LINE not in group.log_text()
    assert _listening_on_pooled_servers(bouncer) == []
    assert group.error_lines() == []


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_session_mode_listens(db_url: str) -> None:
    need_pgbouncer()
    scenarios.prepare(db_url)
    with (
        pgbouncer.PgBouncer(db_url, mode="session", pool_size=20) as session,
        scenarios.workers(
            session.url, 1, 4, PGJOBS_POLL_INTERVAL="60", PGJOBS_LOG_LEVEL="INFO"
        ) as group,
    ):
        wait_for(lambda: LISTEN_LINE in group.log_text(), 30, "the LISTEN line")
        time.sleep(0.5)
        began = time.monotonic()
        ids = scenarios.enqueue(db_url, 1)
        scenarios.wait_finished(db_url, ids, timeout=20)
        assert time.monotonic() - began < 2.0
    assert group.error_lines() == []


def test_admin_command_queued_by_the_pooler_gives_up_with_one_line(
    db_url: str,
) -> None:
    need_pgbouncer()
    with (
        pgbouncer.PgBouncer(db_url, mode="session", pool_size=1) as session,
        psycopg.connect(session.url) as holder,  # takes the only server connection
    ):
        holder.execute("SELECT 1")
        began = time.monotonic()
        result = run_cli(
            "stats", db_url=session.url, PGJOBS_CONNECT_TIMEOUT="2", timeout=30
        )
        took = time.monotonic() - began
    assert result.returncode != 0
    assert "no reply from the database within 2 s" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert took < 15


# -- database errors in claims and outcome writes ------------------------------

_BLOCK_SQL = """
CREATE TABLE test_block (what text PRIMARY KEY, errcode text NOT NULL);
CREATE FUNCTION test_block_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    _code text;
BEGIN
    SELECT errcode INTO _code FROM test_block
     WHERE what = CASE WHEN NEW.status = 'doing' THEN 'claim' ELSE 'finish' END
        OR (NEW.status <> 'doing' AND what = 'finish ' || NEW.id);
    IF _code IS NOT NULL THEN
        RAISE EXCEPTION 'blocked by the test' USING ERRCODE = _code;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER test_block BEFORE UPDATE OF status ON procrastinate_jobs
    FOR EACH ROW EXECUTE FUNCTION test_block_jobs();
"""


def _block(url: str, what: str, errcode: str = "P0001") -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO test_block VALUES (%s, %s)"
            " ON CONFLICT (what) DO UPDATE SET errcode = excluded.errcode",
            (what, errcode),
        )


def _unblock(url: str, what: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM test_block WHERE what = %s", (what,))


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_claims_and_outcome_writes_refused_by_the_database_are_retried(
    db_url: str,
) -> None:
    scenarios.prepare(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(_BLOCK_SQL)  # type: ignore[arg-type]
    _block(db_url, "claim")
    ids = scenarios.enqueue(db_url, 20, ms=5)
    with scenarios.workers(db_url, 1, 4) as group:
        wait_for(
            lambda: "claiming jobs failed (RaiseException" in group.log_text(),
            30,
            "the claim failure line",
        )
        time.sleep(1.5)  # several retries
        assert _statuses(db_url, ids) == {"todo": 20}
        _block(db_url, "finish")
        _unblock(db_url, "claim")
        wait_for(lambda: "doing" in _statuses(db_url, ids), 30, "claims")
        wait_for(
            lambda: (
                "recording job outcomes failed (RaiseException" in group.log_text()
                or "recording a job outcome failed (RaiseException" in group.log_text()
            ),
            30,
            "the outcome failure line",
        )
        time.sleep(1.5)
        assert "succeeded" not in _statuses(db_url, ids)
        _unblock(db_url, "finish")
        scenarios.wait_finished(db_url, ids, timeout=60)
        group.check_alive()
    assert group.exited == []
    assert _statuses(db_url, ids) == {"succeeded": 20}
    log = group.log_text()
    assert log.count("claiming jobs failed") == 1, log
    assert "claiming jobs works again" in log
    assert "works again" in log.split("recording", 1)[1]
    assert "Traceback" not in log


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_an_outcome_the_database_refuses_holds_up_no_other(db_url: str) -> None:
    scenarios.prepare(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(_BLOCK_SQL)  # type: ignore[arg-type]
    ids = scenarios.enqueue(db_url, 40, ms=50)
    poison = ids[2]
    _block(db_url, f"finish {poison}")
    with scenarios.workers(db_url, 1, 4) as group:
        wait_for(
            lambda: _statuses(db_url, ids).get("succeeded") == 39,
            60,
            "every other job",
        )
        assert _statuses(db_url, [poison]) == {"doing": 1}
        _unblock(db_url, f"finish {poison}")
        scenarios.wait_finished(db_url, ids, timeout=60)
    assert group.exited == []
    assert _statuses(db_url, ids) == {"succeeded": 40}
    assert "Traceback" not in group.log_text()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_claim_refused_by_a_missing_privilege_stops_the_worker_with_one_line(
    db_url: str,
) -> None:
    scenarios.prepare(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(_BLOCK_SQL)  # type: ignore[arg-type]
    _block(db_url, "claim", "42501")  # insufficient_privilege
    scenarios.enqueue(db_url, 5)
    with scenarios.workers(db_url, 1, 4) as group:
        proc = group.procs[0]
        proc.wait(timeout=60)
    assert proc.returncode == 1
    log = group.log_text()
    assert "Traceback" not in log
    [line] = [x for x in log.splitlines() if x.startswith("Error:")]
    assert "cannot claim jobs (InsufficientPrivilege: blocked by the test)" in line
    assert "GRANT pgjobs_worker TO" in line


# -- connection shortage at start ------------------------------------------------


@pytest.fixture
def small_cluster() -> Iterator[Cluster]:
    """A private server with max_connections = 20."""
    cluster = Cluster()
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET max_connections = 20")
        conn.execute("ALTER SYSTEM SET superuser_reserved_connections = 0")
    cluster.stop()
    cluster.start()
    yield cluster
    cluster.close()


def _fill(url: str) -> list[psycopg.Connection[Any]]:
    """Every free connection slot of the server, held."""
    held = []
    while True:
        try:
            held.append(psycopg.connect(url, autocommit=True, connect_timeout=5))
        except psycopg.OperationalError as exc:
            assert "too many clients" in str(exc)
            return held


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_worker_short_of_connections_at_start_waits_then_works(
    small_cluster: Cluster,
) -> None:
    url = small_cluster.url
    scenarios.prepare(url)
    ids = scenarios.enqueue(url, 50, ms=5)
    held = _fill(url)
    try:
        with scenarios.workers(url, 1, 4) as group:
            wait_for(
                lambda: "no free connection slot" in group.log_text(),
                60,
                "the shortage WARNING",
            )
            time.sleep(1.0)
            assert group.procs[0].poll() is None
            assert _statuses_on(held[0], ids) == {"todo": 50}
            # A few slots: fewer connections than the worker wants, it works.
            # (The test counts on a slot of its own: the worker takes the
            # freed ones.)
            watch = held[0]
            for conn in held[1:5]:
                conn.close()
            wait_for(
                lambda: _statuses_on(watch, ids).get("succeeded", 0) >= 10,
                120,
                "jobs run with 4 free slots",
            )
            for conn in held[5:]:
                conn.close()
            held = held[:1]
            wait_for(
                lambda: _statuses_on(watch, ids).get("succeeded") == 50,
                120,
                "every job",
            )
            group.check_alive()
            more = scenarios.enqueue(url, 10, start=100)
            scenarios.wait_finished(url, more, timeout=60)
    finally:
        for conn in held:
            conn.close()
    assert group.exited == []
    assert _statuses(url, [*ids, *more]) == {"succeeded": 60}
    log = group.log_text()
    assert log.count("no free connection slot") == 1, log
    assert "got a connection slot after" in log
    assert "Traceback" not in log


def _statuses_on(conn: psycopg.Connection[Any], ids: list[int]) -> dict[str, int]:
    return dict(
        conn.execute(
            "SELECT status::text, count(*) FROM procrastinate_jobs"
            " WHERE id = ANY(%s) GROUP BY 1",
            [ids],
        ).fetchall()
    )


def test_poolclosed_is_not_an_outage_forever(db_url: str) -> None:
    """psycopg_pool closes a pool whose wait() timed out: the connector
    replaces it, so the worker's retry loops find a working one."""
    import asyncio

    from pgjobs import App, Settings

    app = App(settings=Settings(database_url=db_url, _env_file=None))  # type: ignore[call-arg]

    async def go() -> int:
        async with app.open_async():
            connector = app.connector
            await connector.pool.close()
            with pytest.raises(Exception) as refused:
                await connector.execute_query_one_async(query="SELECT 1 AS one")
            assert isinstance(refused.value.__cause__, psycopg_pool.PoolClosed)
            assert await connector.reopen()
            row = await connector.execute_query_one_async(query="SELECT 1 AS one")
            return int(row["one"])

    assert asyncio.run(go()) == 1


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_admin_commands_through_transaction_mode(empty_db_url: str) -> None:
    need_pgbouncer()
    with pgbouncer.PgBouncer(empty_db_url, mode="transaction", pool_size=3) as tx:
        for command in (
            ("db", "upgrade"),
            ("db", "current"),
            ("defer", "faults.work", "--app", "faults.app.app", "--args", '{"n": 1}'),
            ("stats", "--json"),
            ("health",),
            ("jobs", "list", "--json"),
            ("dlq", "list"),
        ):
            result = run_cli(*command, db_url=tx.url)
            assert result.returncode == 0, (command, result.stderr)
            assert "Traceback" not in result.stderr
    assert _count(empty_db_url, "SELECT count(*) FROM procrastinate_jobs") == 1


def test_pooler_settings_are_checked_at_start(db_url: str) -> None:
    for name, value, needle in (
        ("PGJOBS_PREPARE_THRESHOLD", "-1", "PGJOBS_PREPARE_THRESHOLD"),
        ("PGJOBS_LISTEN_DATABASE_URL", "mysql://x", "PGJOBS_LISTEN_DATABASE_URL"),
        ("PGJOBS_POLL_INTERVAL", "0", "PGJOBS_POLL_INTERVAL"),
        ("PGJOBS_CONNECT_TIMEOUT", "soon", "PGJOBS_CONNECT_TIMEOUT"),
    ):
        result = run_cli("stats", db_url=db_url, **{name: value})
        assert result.returncode == 2, (name, result.stderr)
        assert needle in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
