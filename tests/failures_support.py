"""Helpers shared by the failure-handling tests (tests/test_failures_*.py)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from pgjobs import App
from tests.conftest import ROOT, cli_env
from tests.support import wait_for as wait_for


async def run_worker(app: App, **options: Any) -> None:
    """Run an in-process worker until no job is ready to run.

    One job at a time by default: with more, a wait=False worker stops as soon
    as a fetch finds nothing, even while a job that will be retried now runs.
    """
    options.setdefault("concurrency", 1)
    async with app.open_async():
        await app.run_worker_async(wait=False, install_signal_handlers=False, **options)


def one(conn: psycopg.Connection[Any], query: str, *params: Any) -> Any:
    row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
    return None if row is None else (row[0] if len(row) == 1 else row)


@pytest.fixture
def db(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection: each statement sees the latest commits."""
    with psycopg.connect(db_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def worker_processes(db_url: str) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start ``pgjobs worker`` processes; all are killed at the end."""
    processes: list[subprocess.Popen[str]] = []

    def start(*args: str, **env: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "pgjobs", "worker", *args],
            env=cli_env(db_url, **env),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.communicate()
