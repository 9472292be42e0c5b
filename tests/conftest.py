"""The suite's fixtures (helpers are in ``tests.support``)."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs import App, Settings
from pgjobs.testing.server import PgServer
from tests.support.processes import Processes


@pytest.fixture(scope="session")
def server(pgjobs_server: PgServer) -> PgServer:
    """pgjobs.testing's server (the pytest kit's plugin): one per process."""
    return pgjobs_server


@pytest.fixture
def db_url(pgjobs_db: str) -> str:
    """A fresh database migrated to head (the kit's ``pgjobs_db``)."""
    return pgjobs_db


@pytest.fixture
def empty_db_url(server: PgServer) -> Iterator[str]:
    """A fresh database with no schema at all."""
    name, url = server.new_database(migrated=False)
    yield url
    server.drop_database(name)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=db_url, embedded_dir=tmp_path / "unused", _env_file=None
    )  # type: ignore[call-arg]


@pytest.fixture
def app(settings: Settings) -> App:
    return App(settings=settings)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(db_url) as connection:
        yield connection


@pytest.fixture
async def aconn(db_url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(db_url) as connection:
        yield connection


@pytest.fixture
def db(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection: each statement sees the latest commits."""
    with psycopg.connect(db_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def runs_db(db_url: str) -> str:
    """``db_url`` with the runs table of every test App (where their tasks
    record each run)."""
    from tests.support import apps

    with psycopg.connect(db_url, autocommit=True) as connection:
        for table in apps.runs_tables():
            connection.execute(table)
    return db_url


@pytest.fixture
def dash_app(settings: Settings) -> App:
    """An App with the dashboard tests' tasks (tests.support.apps.dashboard)."""
    from tests.support.apps.dashboard import register

    return register(App(settings=settings))


@pytest.fixture
def processes(db_url: str) -> Iterator[Processes]:
    """Start worker (and other ``python -m``) processes; killed at the end."""
    started = Processes(db_url)
    yield started
    started.close()


@pytest.fixture
def worker_processes(
    processes: Processes,
) -> Callable[..., subprocess.Popen[bytes]]:
    """Start ``pgjobs worker`` processes (``processes.worker``)."""
    return processes.worker
