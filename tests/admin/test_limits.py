"""Limits admin API and ``pgjobs limits``: declared vs runtime, set, reset,
bad input (one line, non-zero exit, nothing written)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import psycopg
import pytest

from pgjobs import App, InvalidLimit, LimitNotFound, Settings
from pgjobs.admin import limits
from pgjobs.db.connector import Connector
from pgjobs.worker import limits as declared
from tests.support import run_cli

pytestmark = pytest.mark.timeout(60)


def declare(db_url: str) -> App:
    """An App declaring limits, synced as a worker's start does."""
    app = App(settings=Settings(database_url=db_url, _env_file=None))

    @app.task(
        name="api.call",
        rate_limit="10/s",
        limit_key="tenant_id",
        key_concurrency_limit=5,
    )
    def call(tenant_id: str) -> None: ...

    @app.task(name="plain")
    def plain() -> None: ...

    async def sync() -> bool:
        connector = Connector(app.settings)
        await connector.open_async()
        try:
            return await declared.sync_declared(connector, app.tasks.values())
        finally:
            await connector.close_async()

    assert asyncio.run(sync()) is True
    return app


def table(db_url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "SELECT task_name, scope, kind, key_arg, declared_amount,"
            " runtime_amount FROM pgjobs.task_limits ORDER BY 1, 2, 3"
        ).fetchall()


def test_declared_limits_are_synced_and_listed(db_url: str) -> None:
    declare(db_url)
    found = limits.list_limits(db_url)
    assert [
        (f.scope, f.kind, f.key_arg, f.declared, f.runtime, f.effective) for f in found
    ] == [
        ("task", "rate", None, "10/s", None, "10/s"),
        ("key", "concurrency", "tenant_id", "5", None, "5"),
    ]


def test_runtime_values_win_and_reset_restores_the_declared(db_url: str) -> None:
    declare(db_url)
    limits.set_limit(db_url, "api.call", rate="100/m")
    limits.set_limit(db_url, "api.call", concurrency=2, per_key="tenant_id")
    by_kind = {f.kind: f for f in limits.list_limits(db_url, "api.call")}
    assert (by_kind["rate"].declared, by_kind["rate"].runtime) == ("10/s", "100/m")
    assert by_kind["rate"].effective == "100/m"
    assert by_kind["concurrency"].effective == "2"
    # A worker's start keeps the runtime values.
    declare(db_url)
    assert limits.list_limits(db_url, "api.call")[0].effective == "100/m"
    changes = limits.reset_limit(db_url, "api.call", kind="rate")
    assert [(c.kind, c.changed) for c in changes] == [("rate", True)]
    assert limits.list_limits(db_url, "api.call")[0].effective == "10/s"


def test_a_runtime_only_limit_goes_away_on_reset(db_url: str) -> None:
    limits.set_limit(db_url, "other", concurrency=3)
    assert table(db_url) == [("other", "task", "concurrency", None, None, 3)]
    limits.reset_limit(db_url, "other")
    assert table(db_url) == []
    with pytest.raises(LimitNotFound):
        limits.reset_limit(db_url, "other")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rate": "ten per second"}, "must look like"),
        ({"rate": "5/week"}, "unknown unit"),
        ({"concurrency": 0}, "at least 1"),
        ({"concurrency": -1}, "at least 1"),
        ({}, "give a concurrency limit"),
        ({"concurrency": 2, "per_key": "not an arg"}, "argument name"),
    ],
)
def test_bad_values_are_refused_before_anything_is_written(
    db_url: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidLimit, match=message):
        limits.set_limit(db_url, "api.call", **options)
    assert table(db_url) == []


def test_another_key_than_the_declared_one_is_refused(db_url: str) -> None:
    declare(db_url)
    with pytest.raises(InvalidLimit, match="limited per 'tenant_id'"):
        limits.set_limit(db_url, "api.call", concurrency=1, per_key="user_id")


# -- the CLI -------------------------------------------------------------------


def test_cli_list_set_reset(db_url: str) -> None:
    declare(db_url)
    result = run_cli("limits", "set", "api.call", "--rate", "20/s", db_url=db_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "api.call: rate limit set to 20/s\n"
    result = run_cli("limits", "list", db_url=db_url)
    assert result.returncode == 0, result.stderr
    assert "DECLARED" in result.stdout and "RUNTIME" in result.stdout
    assert "10/s" in result.stdout and "20/s" in result.stdout
    result = run_cli("limits", "list", "--json", db_url=db_url)
    listed = json.loads(result.stdout)
    assert [
        (row["kind"], row["declared"], row["runtime"], row["effective"])
        for row in listed
    ] == [
        ("rate", "10/s", "20/s", "20/s"),
        ("concurrency", "5", None, "5"),
    ]
    result = run_cli("limits", "reset", "api.call", db_url=db_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "api.call: rate limit reset to its declared value\n"


@pytest.mark.parametrize(
    "args",
    [
        ("--rate", "ten per second"),
        ("--rate", "10/fortnight"),
        ("--concurrency", "0"),
        ("--concurrency", "-5"),
    ],
)
def test_cli_bad_input_is_one_line_and_writes_nothing(
    db_url: str, args: tuple[str, ...]
) -> None:
    result = run_cli("limits", "set", "api.call", *args, db_url=db_url)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert table(db_url) == []
