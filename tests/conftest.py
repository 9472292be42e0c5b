from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs import App, Settings
from tests.database import PgServer

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def server() -> Iterator[PgServer]:
    test_server = PgServer()
    yield test_server
    test_server.close()


@pytest.fixture
def db_url(server: PgServer) -> Iterator[str]:
    """A fresh database migrated to head."""
    name, url = server.new_database()
    yield url
    server.drop_database(name)


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


def cli_env(db_url: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGJOBS_")}
    if db_url:
        env["PGJOBS_DATABASE_URL"] = db_url
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def run_cli(
    *args: str,
    db_url: str | None,
    cwd: Path | None = None,
    timeout: float = 60,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """Run the real ``pgjobs`` command line in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "pgjobs", *args],
        env=cli_env(db_url, **env),
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
