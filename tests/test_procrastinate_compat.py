"""procrastinate's public API on a ``pgjobs.App``, on a real database.

Each test uses procrastinate as its documentation says and asserts
procrastinate's documented result: the job rows, their states, what the
tasks received. Where pgjobs differs on purpose, the test asserts the
difference, and README's "Coming from procrastinate" lists it.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import procrastinate
import psycopg
import pytest
from procrastinate import exceptions as procrastinate_exceptions
from procrastinate import testing
from procrastinate.contrib.aiopg import AiopgConnector
from procrastinate.contrib.psycopg2 import Psycopg2Connector
from procrastinate.contrib.sqlalchemy import SQLAlchemyPsycopg2Connector
from procrastinate.manager import QUEUEING_LOCK_CONSTRAINT

import pgjobs
from pgjobs import App, Settings
from pgjobs.errors import AlreadyEnqueued, InvalidJobOptions, InvalidPayload
from tests.support import ROOT, cli_env, rows
from tests.support.apps import compat as apps_compat
from tests.support.apps.compat import Param, dumps, loads


@pytest.fixture
def runs_url(db_url: str) -> str:
    with psycopg.connect(db_url) as conn:
        conn.execute(apps_compat.RUNS_TABLE)
    apps_compat.RUNS.clear()
    return db_url


def runs(url: str, task: str) -> list[Any]:
    with psycopg.connect(url) as conn:
        found = conn.execute(
            "SELECT value FROM compat_runs WHERE task = %s ORDER BY id", [task]
        ).fetchall()
    return [value for (value,) in found]


def jobs(url: str) -> list[tuple[Any, ...]]:
    return rows(
        url,
        "SELECT task_name, args, status::text, attempts FROM procrastinate_jobs "
        "ORDER BY id",
    )


# -- defer on every connector procrastinate ships ---------------------------

ConnectorFactory = Callable[[str], Any]

CONNECTORS: dict[str, ConnectorFactory] = {
    "pgjobs": lambda url: None,  # pgjobs' own (a psycopg 3 PsycopgConnector)
    "psycopg": lambda url: procrastinate.PsycopgConnector(
        conninfo=url, json_dumps=dumps, json_loads=loads
    ),
    "sync_psycopg": lambda url: procrastinate.SyncPsycopgConnector(
        conninfo=url, json_dumps=dumps, json_loads=loads
    ),
    "psycopg2": lambda url: Psycopg2Connector(
        dsn=url, json_dumps=dumps, json_loads=loads
    ),
    "aiopg": lambda url: AiopgConnector(dsn=url, json_dumps=dumps, json_loads=loads),
    "sqlalchemy_psycopg2": lambda url: SQLAlchemyPsycopg2Connector(
        dsn=url.replace("postgresql://", "postgresql+psycopg2://"),
        json_dumps=dumps,
        json_loads=loads,
    ),
}
ASYNC = {"pgjobs", "psycopg", "aiopg"}


@pytest.mark.parametrize("kind", sorted(CONNECTORS))
def test_defer_on_every_connector(kind: str, runs_url: str, settings: Settings) -> None:
    app = apps_compat.build(settings, connector=CONNECTORS[kind](runs_url))
    custom_json = kind != "pgjobs"
    with app.open():
        add = app.tasks["compat.add"]
        first = add.defer(a=1, b=2)
        second = add.configure(queue="other", priority=5, lock="L").defer(a=3)
        assert isinstance(first, int) and second == first + 1
        if custom_json:  # the connector's json_dumps writes the arguments
            app.tasks["compat.param"].defer(p=Param(7))
        # procrastinate's AlreadyEnqueued, carrying its UniqueViolation cause.
        app.tasks["compat.locked"].defer()
        with pytest.raises(procrastinate_exceptions.AlreadyEnqueued) as duplicate:
            app.tasks["compat.locked"].defer()
        cause = duplicate.value.__cause__
        assert isinstance(cause, procrastinate_exceptions.UniqueViolation)
        assert cause.constraint_name == QUEUEING_LOCK_CONSTRAINT
        assert cause.queueing_lock == "only-one"
        # pgjobs' validation: refused, nothing written.
        with pytest.raises(InvalidPayload, match="argument a"):
            add.defer(a="not a number")
    expected = [
        ("compat.add", {"a": 1, "b": 2}, "todo", 0),
        ("compat.add", {"a": 3}, "todo", 0),
    ]
    if custom_json:
        expected.append(("compat.param", {"p": {"__param__": 7}}, "todo", 0))
    expected.append(("compat.locked", {}, "todo", 0))
    assert jobs(runs_url) == expected
    assert rows(runs_url, "SELECT queue_name, priority, lock FROM procrastinate_jobs")[
        1
    ] == ("other", 5, "L")


@pytest.mark.parametrize("kind", sorted(ASYNC))
async def test_defer_async_and_run_worker_on_async_connectors(
    kind: str, runs_url: str, settings: Settings
) -> None:
    app = apps_compat.build(settings, connector=CONNECTORS[kind](runs_url))
    async with app.open_async():
        await app.tasks["compat.add"].defer_async(a=20, b=1)
        if kind != "pgjobs":
            await app.tasks["compat.param"].defer_async(p=Param(8))
        await app.tasks["compat.fail"].defer_async()
        await app.run_worker_async(wait=False, install_signal_handlers=False)
    assert runs(runs_url, "compat.add") == [21]
    if kind != "pgjobs":
        # json_loads rebuilt the Param: the task got what procrastinate gives.
        assert runs(runs_url, "compat.param") == [["Param", 8]]
    assert [(t, s, a) for t, _, s, a in jobs(runs_url)] == [
        ("compat.add", "succeeded", 1),
        *([("compat.param", "succeeded", 1)] if kind != "pgjobs" else []),
        ("compat.fail", "failed", 1),
    ]
    # pgjobs on top: the failure is a dead letter with its error.
    assert rows(runs_url, "SELECT task_name, error_type FROM pgjobs.dead_letters") == [
        ("compat.fail", "ValueError")
    ]


def test_connection_argument_joins_the_callers_transaction(
    runs_url: str, settings: Settings
) -> None:
    """``configure(connection=...)``: procrastinate's in-transaction defer."""
    import sqlalchemy

    app = apps_compat.build(settings)
    with app.open(), psycopg.connect(runs_url) as conn:
        app.tasks["compat.add"].configure(connection=conn).defer(a=1)
        conn.rollback()
        app.tasks["compat.add"].configure(connection=conn).defer(a=2)
        conn.commit()
    assert [args for _, args, _, _ in jobs(runs_url)] == [{"a": 2}]

    sa_app = apps_compat.build(
        settings, connector=CONNECTORS["sqlalchemy_psycopg2"](runs_url)
    )
    engine = sqlalchemy.create_engine(
        runs_url.replace("postgresql://", "postgresql+psycopg2://")
    )
    with sa_app.open(), engine.connect() as sa_conn:
        sa_app.tasks["compat.add"].configure(connection=sa_conn).defer(a=3)
        sa_conn.rollback()
        sa_app.tasks["compat.add"].configure(connection=sa_conn).defer(a=4)
        sa_conn.commit()
    engine.dispose()
    assert [args for _, args, _, _ in jobs(runs_url)] == [{"a": 2}, {"a": 4}]


# -- procrastinate's documented unit testing: InMemoryConnector --------------


@pytest.fixture
def memory_app(tmp_path: Path) -> Iterator[tuple[App, testing.InMemoryConnector]]:
    """procrastinate's recipe: replace the connector with an in-memory one."""
    settings = Settings(database_url=None, embedded_dir=tmp_path / "no", _env_file=None)  # type: ignore[call-arg]
    app = apps_compat.build(settings)
    apps_compat.RUNS.clear()
    in_memory = testing.InMemoryConnector()
    with app.replace_connector(in_memory) as same_app:
        assert same_app is app
        yield app, in_memory


def test_in_memory_connector_defer_and_run(
    memory_app: tuple[App, testing.InMemoryConnector],
) -> None:
    app, in_memory = memory_app
    job_id = app.tasks["compat.add"].defer(a=1, b=2)
    app.tasks["compat.fail"].defer()
    assert in_memory.jobs[job_id]["args"] == {"a": 1, "b": 2}
    assert in_memory.jobs[job_id]["status"] == "todo"

    app.run_worker(wait=False)

    assert in_memory.jobs[job_id]["status"] == "succeeded"
    assert apps_compat.RUNS == [("compat.add", 3)]
    assert [job["status"] for job in in_memory.jobs.values()] == [
        "succeeded",
        "failed",
    ]
    in_memory.reset()
    assert in_memory.jobs == {}


def test_in_memory_connector_keeps_pgjobs_checks(
    memory_app: tuple[App, testing.InMemoryConnector],
) -> None:
    app, in_memory = memory_app
    with pytest.raises(InvalidPayload, match="argument a"):
        app.tasks["compat.add"].defer(a="x")
    with pytest.raises(InvalidJobOptions, match="lock may not contain NUL"):
        app.tasks["compat.add"].configure(lock="x\x00").defer(a=1)
    app.tasks["compat.locked"].defer()
    with pytest.raises(AlreadyEnqueued) as duplicate:
        app.tasks["compat.locked"].defer()
    assert isinstance(
        duplicate.value.__cause__, procrastinate_exceptions.UniqueViolation
    )
    assert [job["task_name"] for job in in_memory.jobs.values()] == ["compat.locked"]


async def test_in_memory_connector_async(
    memory_app: tuple[App, testing.InMemoryConnector],
) -> None:
    app, in_memory = memory_app
    async with app.open_async():
        job_id = await app.tasks["compat.add"].defer_async(a=5)
        await app.run_worker_async(wait=False, install_signal_handlers=False)
    assert in_memory.jobs[job_id]["status"] == "succeeded"
    assert apps_compat.RUNS == [("compat.add", 5)]


# -- task type hints and JSON ------------------------------------------------


def test_tasks_annotated_with_plain_classes(runs_url: str, settings: Settings) -> None:
    # Importing an app with such a task works (it raised at decoration).
    app = apps_compat.build(settings)
    with app.open():
        # pgjobs difference: without a json_dumps that knows the class, a
        # clear InvalidPayload (procrastinate: an error from json.dumps).
        with pytest.raises(InvalidPayload, match="Param is not JSON-serialisable"):
            app.tasks["compat.param"].defer(p=Param(1))
        # pgjobs difference: the annotation is checked with isinstance.
        with pytest.raises(InvalidPayload, match="argument p"):
            app.tasks["compat.param"].defer(p=3)
    assert jobs(runs_url) == []

    custom = apps_compat.build(
        settings,
        connector=procrastinate.PsycopgConnector(
            conninfo=runs_url, json_dumps=dumps, json_loads=loads
        ),
    )
    with custom.open():
        custom.tasks["compat.param"].defer(p=Param(2))
        custom.tasks["compat.untyped"].defer(p=Param(3))
    assert [args for _, args, _, _ in jobs(runs_url)] == [
        {"p": {"__param__": 2}},
        {"p": {"__param__": 3}},
    ]


# -- the job manager's API ---------------------------------------------------


async def test_job_manager_api(runs_url: str, settings: Settings) -> None:
    app = apps_compat.build(settings)
    manager = app.job_manager
    async with app.open_async():
        add = app.tasks["compat.add"]
        ids = [await add.defer_async(a=i) for i in range(4)]

        listed = await manager.list_jobs_async(task="compat.add", status="todo")
        assert [job.id for job in listed] == ids
        assert listed[0].task_kwargs == {"a": 0}

        # finish_job on a todo job: procrastinate accepts todo or doing.
        [todo] = await manager.list_jobs_async(id=ids[0])
        await manager.finish_job(
            todo, status=procrastinate.jobs.Status.FAILED, delete_job=False
        )
        await manager.finish_job(
            (await manager.list_jobs_async(id=ids[1]))[0],
            status=procrastinate.jobs.Status.SUCCEEDED,
            delete_job=False,
        )

        # retry_job and finish_job on a job a worker holds.
        worker_id = await manager.register_worker()
        doing = await manager.fetch_job(queues=None, worker_id=worker_id)
        assert doing is not None and doing.id == ids[2]
        retry_at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
        await manager.retry_job(doing, retry_at=retry_at)

        # cancel_job_by_id: a todo job is cancelled; a done one is not.
        assert await manager.cancel_job_by_id_async(ids[3]) is True
        assert await manager.cancel_job_by_id_async(ids[1]) is False

    assert rows(
        runs_url,
        "SELECT id, status::text, attempts, scheduled_at IS NOT NULL "
        "FROM procrastinate_jobs ORDER BY id",
    ) == [
        (ids[0], "failed", 0, False),
        (ids[1], "succeeded", 0, False),
        (ids[2], "todo", 1, True),
        (ids[3], "cancelled", 0, False),
    ]
    # pgjobs on top: the failed job is a dead letter; the retried attempt
    # has its error row, the never-run failed job none.
    assert rows(runs_url, "SELECT job_id, attempts FROM pgjobs.dead_letters") == [
        (ids[0], 0)
    ]
    assert rows(runs_url, "SELECT job_id, attempt FROM pgjobs.job_errors") == [
        (ids[2], 1)
    ]


def test_job_manager_sync_api(runs_url: str, settings: Settings) -> None:
    app = apps_compat.build(settings)
    with app.open():
        job_id = app.tasks["compat.add"].defer(a=1)
        [job] = app.job_manager.list_jobs(id=job_id)
        assert (job.task_name, job.task_kwargs, job.status) == (
            "compat.add",
            {"a": 1},
            "todo",
        )
        assert app.job_manager.cancel_job_by_id(job_id) is True
        assert app.job_manager.cancel_job_by_id(job_id) is False
    assert [status for _, _, status, _ in jobs(runs_url)] == ["cancelled"]


async def test_with_connector_keeps_the_pgjobs_app(
    runs_url: str, settings: Settings
) -> None:
    from pgjobs.enqueueing.job_manager import JobManager
    from pgjobs.worker.worker import Worker

    app = apps_compat.build(settings)
    other = app.with_connector(procrastinate.PsycopgConnector(conninfo=runs_url))
    assert isinstance(other, App) and isinstance(other.job_manager, JobManager)
    assert other.tasks is app.tasks and other.settings is app.settings
    assert other.worker_defaults == app.worker_defaults
    assert isinstance(other._worker(), Worker)  # pgjobs' worker, pgjobs' features
    async with app.open_async():
        await app.tasks["compat.fail"].defer_async()
    async with other.open_async():
        await other.run_worker_async(wait=False, install_signal_handlers=False)
    # pgjobs' failure path ran on the new connector: error row, dead letter.
    assert rows(runs_url, "SELECT error_type FROM pgjobs.dead_letters") == [
        ("ValueError",)
    ]


def test_procrastinate_options_get_pgjobs_checks(
    runs_url: str, settings: Settings
) -> None:
    app = apps_compat.build(settings)
    add = app.tasks["compat.add"]
    with app.open():
        for options, message in (
            ({"lock": "x\x00"}, "lock may not contain NUL"),
            ({"queueing_lock": "x\x00"}, "queueing_lock may not contain NUL"),
            ({"queue": "q\x00"}, "queue name must be 1 to 128"),
            ({"queue": "q" * 200}, "queue name must be 1 to 128"),
            ({"schedule_in": {"seconds": -5}}, "schedule_in must not be negative"),
            ({"schedule_in": {"fortnights": 1}}, "invalid schedule_in"),
        ):
            with pytest.raises(InvalidJobOptions, match=message):
                add.configure(**options).defer(a=1)
        with pytest.raises(InvalidJobOptions, match="queue name"):
            app.configure_task("compat.add", queue="q" * 129).defer(a=1)
        add.configure(schedule_in={"seconds": 0}).defer(a=1)
    assert len(jobs(runs_url)) == 1
    # As in procrastinate: defer needs an open App, and says so.
    with pytest.raises(procrastinate_exceptions.AppNotOpen):
        add.defer(a=1)


def test_worker_defaults_differ_but_options_win(settings: Settings) -> None:
    """pgjobs difference: 10 jobs at once and a 30 s shutdown grace by
    default (procrastinate: 1 and wait forever); explicit options win."""
    app = apps_compat.build(settings)
    pg_default = app._worker()
    assert (pg_default.concurrency, pg_default.shutdown_graceful_timeout) == (10, 30)
    stock = procrastinate.App(connector=testing.InMemoryConnector())._worker()
    assert (stock.concurrency, stock.shutdown_graceful_timeout) == (1, None)
    chosen = app._worker(concurrency=1, shutdown_graceful_timeout=None)
    assert (chosen.concurrency, chosen.shutdown_graceful_timeout) == (1, None)
    forever = apps_compat.build(
        settings, worker_defaults={"shutdown_graceful_timeout": None}
    )._worker()
    assert forever.shutdown_graceful_timeout is None


def test_procrastinate_cli_worker_options_and_env_vars_win(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``procrastinate worker`` passes to the App (its parser, then
    ``App.run_worker_async(**options)``) beats pgjobs' defaults."""
    from procrastinate import cli as procrastinate_cli_module

    def worker_for(*args: str) -> Any:
        parsed = procrastinate_cli_module.parse_args(
            ["--app=tests.support.apps.compat.app", "worker", *args]
        )
        for key in ("app", "func", "command", "verbose", "log_level"):
            parsed.pop(key, None)
        for key in ("log_format", "log_format_style"):
            parsed.pop(key, None)
        return apps_compat.build(settings)._worker(**parsed)

    default = worker_for()
    assert (default.concurrency, default.shutdown_graceful_timeout) == (10, 30)
    flags = worker_for("--concurrency", "1", "--shutdown-graceful-timeout", "600")
    assert (flags.concurrency, flags.shutdown_graceful_timeout) == (1, 600)
    monkeypatch.setenv("PROCRASTINATE_WORKER_CONCURRENCY", "2")
    monkeypatch.setenv("PROCRASTINATE_WORKER_SHUTDOWN_GRACEFUL_TIMEOUT", "90")
    env = worker_for()
    assert (env.concurrency, env.shutdown_graceful_timeout) == (2, 90)


@pytest.mark.slow
async def test_periodic_task(runs_url: str, settings: Settings) -> None:
    app = apps_compat.build(settings, periodic=True)
    async with app.open_async():
        worker = asyncio.create_task(
            app.run_worker_async(install_signal_handlers=False, wait=True)
        )
        deadline = time.monotonic() + 20
        while len(runs(runs_url, "compat.tick")) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        worker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await worker
    ticks = runs(runs_url, "compat.tick")
    assert len(ticks) >= 2 and len(set(ticks)) == len(ticks)
    assert rows(
        runs_url,
        "SELECT DISTINCT task_name, periodic_id FROM procrastinate_periodic_defers",
    ) == [("compat.tick", "every-second")]


# -- the procrastinate command line ------------------------------------------


def procrastinate_cli(
    *args: str, db_url: str | None, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "procrastinate",
            "--app=tests.support.apps.compat.app",
            *args,
        ],
        env=cli_env(db_url, **env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_procrastinate_cli_defer_worker_shell(runs_url: str) -> None:
    ok = procrastinate_cli("defer", "compat.add", '{"a": 2, "b": 3}', db_url=runs_url)
    assert ok.returncode == 0, ok.stderr
    bad = procrastinate_cli("defer", "compat.add", '{"a": "x"}', db_url=runs_url)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1] == (
        "task 'compat.add': argument a: Input should be a valid integer, "
        "unable to parse string as an integer"
    )
    assert "validation error" not in bad.stderr  # no pydantic chain printed

    worker = procrastinate_cli("worker", "--one-shot", db_url=runs_url)
    assert worker.returncode == 0, worker.stderr
    assert runs(runs_url, "compat.add") == [5]

    procrastinate_cli("defer", "compat.add", '{"a": 1}', db_url=runs_url)
    shell = procrastinate_cli("shell", "list_jobs", db_url=runs_url)
    assert shell.returncode == 0, shell.stderr
    assert "#1 compat.add on default - [succeeded]" in shell.stdout
    assert "#2 compat.add on default - [todo]" in shell.stdout
    cancel = procrastinate_cli("shell", "cancel", "2", db_url=runs_url)
    assert "#2 compat.add on default - [cancelled]" in cancel.stdout, cancel.stderr
    health = procrastinate_cli("healthchecks", db_url=runs_url)
    assert health.returncode == 0 and "DB connection: OK" in health.stdout


def overlapping(url: str) -> bool:
    spans = rows(
        url,
        "SELECT started_at, finished_at FROM compat_runs WHERE task = 'compat.sleep' "
        "ORDER BY started_at",
    )
    assert len(spans) == 3
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))


def defer_sleeps(url: str) -> None:
    for _ in range(3):
        result = procrastinate_cli(
            "defer", "compat.sleep", '{"seconds": 0.4}', db_url=url
        )
        assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_procrastinate_cli_concurrency_option_and_env_win(
    server: Any, runs_url: str
) -> None:
    # pgjobs' default: 10 at once, so the three sleeps overlap.
    defer_sleeps(runs_url)
    assert procrastinate_cli("worker", "--one-shot", db_url=runs_url).returncode == 0
    assert overlapping(runs_url)
    for how in ({"args": ("--concurrency", "1")}, {"env": "1"}):
        name, url = server.new_database()
        try:
            with psycopg.connect(url) as conn:
                conn.execute(apps_compat.RUNS_TABLE)
            defer_sleeps(url)
            extra_env = (
                {"PROCRASTINATE_WORKER_CONCURRENCY": how["env"]} if "env" in how else {}
            )
            result = procrastinate_cli(
                "worker", "--one-shot", *how.get("args", ()), db_url=url, **extra_env
            )
            assert result.returncode == 0, result.stderr
            assert not overlapping(url), how
        finally:
            server.drop_database(name)


def test_procrastinate_cli_app_outside_the_import_path(
    runs_url: str, tmp_path: Path
) -> None:
    """procrastinate's CLI does not add the current folder (pgjobs' does:
    see tests/test_first_hour.py); it still says so in one line."""
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "__init__.py").write_text("")
    (tmp_path / "myapp" / "jobs.py").write_text("from pgjobs import App\napp = App()\n")
    env = cli_env(runs_url)
    env.pop("PYTHONPATH")
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("procrastinate")),
            "--app=myapp.jobs.app",
            "healthchecks",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "myapp" in result.stderr


def test_readme_lists_the_differences() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Coming from procrastinate", 1)[1].split("\n## ", 1)[0]
    for needle in (
        "concurrency",
        "shutdown",
        "PROCRASTINATE_WORKER_CONCURRENCY",
        "InMemoryConnector",
        "json_dumps",
        "isinstance",
        "schedule_in",
        "app.open()",
        "finish_job",
        "AlreadyEnqueued",
        "with_connector",
    ):
        assert needle in section, needle
    assert json.dumps(pgjobs.__name__)  # the package imports cleanly
