"""Every ``pgjobs`` command on its error paths: never a traceback.

Each command runs through the real entry point (``pgjobs.cli.main``, in this
process for speed, on a real database) with a bad value, against an
unreachable database, against a read-only server
(``default_transaction_read_only = on``) and as the ``pgjobs_monitor`` role.
Whatever happens, no exception may escape and a failure is one line,
``Error: ...``, with a non-zero exit. ``COMMANDS`` must name every command:
a new command fails ``test_every_command_is_covered`` until it is added.
"""

from __future__ import annotations

import logging
import sys
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import click
import psycopg
import pytest

from pgjobs.cli import cli, main
from pgjobs.scheduling import schedules
from tests.support import rows
from tests.support.apps import compat as apps_compat

APP = ("--app", "tests.support.apps.cli_errors.app")

#: command -> (a valid invocation, bad invocations). Ids 1 and 2 and the
#: schedule "s" exist in the seeded database (see ``seeded``).
COMMANDS: dict[str, tuple[tuple[str, ...] | None, list[tuple[str, ...]]]] = {
    "breakers list": (("--json",), [("--bogus",)]),
    "breakers reset": (("crm",), [(), ("crm", "extra")]),
    # Serves until stopped: bad values only (tests/dashboard/test_dashboard.py runs it).
    "dashboard": (None, [("--port", "99999"), ("--host",), ("--bogus",)]),
    "db current": ((), [("--bogus",)]),
    "db downgrade": (("--sql", "0014:0010"), [("nope",)]),
    "db history": ((), [("extra",)]),
    "db upgrade": ((), [("nope",)]),
    "defer": (
        ("compat.add", "--args", '{"a": 1}', *APP),
        [
            ("compat.add", "--args", '{"a": "x"}', *APP),
            ("compat.add", "--args", "{", *APP),
            ("compat.add", "--priority", "high", *APP),
            ("compat.add", "--delay", "-1", *APP),
            ("compat.add", "--args", '{"a": 1}', "--queue", "q\x01" * 100, *APP),
            ("compat.add", "--args", '{"a": 1}', "--lock", "a\x00", *APP),
            ("no.such.task", *APP),
            ("compat.add", "--app", "no.such.module.app"),
            ("compat.add", "--app", "tests.support.apps.cli_errors"),
        ],
    ),
    "demo": ((), [("--bogus",)]),
    "dlq list": (("--since", "1d"), [("--since", "5x"), ("--limit", "0")]),
    "dlq purge": (("--older-than", "30d"), [(), ("--older-than", "-1d")]),
    "dlq replay": (("1",), [(), ("abc",), ("--since", "soon")]),
    "dlq show": (("1",), [("abc",), ("999999",)]),
    "events": (
        ("--limit", "5"),
        [("--limit", "-1"), ("--limit", "x"), ("--queue",)],
    ),
    "health": ((), [("--max-latency", "soon"), ("--max-dead-rows", "-1")]),
    "jobs cancel": (("1",), [("abc",), ("999999",)]),
    "jobs list": (
        ("--status", "todo"),
        [("--older-than", "5x"), ("--status", "nope"), ("--limit", "-3")],
    ),
    "jobs retry": (("2",), [("abc",), ("1",)]),
    "jobs show": (("1",), [("abc",), ("999999",), ()]),
    "limits list": (("--json",), [("extra", "more"), ("--bogus",)]),
    "limits reset": (("t",), [(), ("nope",), ("t", "--kind", "speed")]),
    "limits set": (
        ("t", "--concurrency", "3"),
        [
            ("t",),
            ("t", "--rate", "ten per second"),
            ("t", "--rate", "5/week"),
            ("t", "--rate", "0/s"),
            ("t", "--concurrency", "0"),
            ("t", "--concurrency", "-2"),
            ("t", "--concurrency", "x"),
            ("t", "--concurrency", "2", "--per-key", "not an arg"),
            ("t" * 129, "--concurrency", "2"),
        ],
    ),
    "metrics": ((), [("--port", "99999")]),
    "prune": (
        ("--succeeded-older-than", "7d"),
        [(), ("--keep-failed", "-1"), ("--failed-older-than", "x")],
    ),
    "queues list": (("--json",), [("extra",), ("--bogus",)]),
    "queues pause": (("q",), [(), ("",), ("q" * 129,), ("q", "extra")]),
    "queues resume": (("q",), [(), ("",), ("q" * 129,)]),
    "roles": ((), [("extra",)]),
    "schedules add": (
        ("t", "compat.add", "--cron", "0 0 * * *", "--args", '{"a": 1}', *APP),
        [
            ("t", "compat.add", "--cron", "0 0 31 2 *", "--args", '{"a": 1}', *APP),
            ("t", "compat.add", "--cron", "61 * * * *", "--args", '{"a": 1}', *APP),
            ("t", "compat.add", "--every", "soon", "--args", '{"a": 1}', *APP),
            ("t", "compat.add", "--cron", "* * * * *", *APP),
            ("s", "compat.add", "--cron", "* * * * *", "--args", '{"a": 1}', *APP),
        ],
    ),
    "schedules change": (
        ("s", "--cron", "0 1 * * *", *APP),
        [("s", "--cron", "*/0 * * * *", *APP), ("nope", "--cron", "0 1 * * *", *APP)],
    ),
    "schedules health": ((), [("--bogus",)]),
    "schedules list": ((), [("extra",)]),
    "schedules pause": (("s",), [("nope",)]),
    "schedules remove": (("s",), [("nope",)]),
    "schedules resume": (("s",), [("nope",)]),
    "schedules run": (("s",), [("nope",)]),
    "schedules runs": (("s",), [("nope",), ("s", "--limit", "0")]),
    "stats": ((), [("--window", "yesterday"), ("--watch", "-1")]),
    "worker": (
        ("--one-shot", *APP),
        [
            ("--one-shot", "--concurrency", "0", *APP),
            ("--one-shot", "--queue", "", *APP),
            ("--one-shot", "--app", "tests"),
            ("--one-shot",),
        ],
    ),
}

#: Commands whose exit 1 is an answer (problems found), not an error.
PROBES = {"health", "schedules health"}
#: Commands that never touch the database with the valid invocation above.
OFFLINE = {"db downgrade", "db history"}


def leaf_commands(group: click.Group, prefix: str = "") -> Iterator[str]:
    for name, command in sorted(group.commands.items()):
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            yield from leaf_commands(command, path + " ")
        else:
            yield path


def test_every_command_is_covered() -> None:
    missing = sorted(set(leaf_commands(cli)) - COMMANDS.keys())
    assert not missing, f"add these commands to COMMANDS: {missing}"


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str


@pytest.fixture
def invoke(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Any]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level

    def run(url: str, command: str, args: tuple[str, ...]) -> Outcome:
        monkeypatch.setenv("PGJOBS_DATABASE_URL", url)
        monkeypatch.setenv("PGJOBS_LOG_LEVEL", "ERROR")
        monkeypatch.delenv("PGJOBS_APP", raising=False)
        monkeypatch.setattr(sys, "argv", ["pgjobs", *command.split(), *args])
        # The app module reads its settings at import: once per invocation.
        sys.modules.pop("tests.support.apps.cli_errors", None)
        capsys.readouterr()
        try:
            main()  # any exception but SystemExit fails the test
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out = capsys.readouterr()
        outcome = Outcome(code, out.out, out.err)
        where = f"pgjobs {command} {' '.join(args)!r} on {url}: {outcome}"
        assert "Traceback" not in out.err + out.out, where
        if code != 0 and not (code == 1 and command in PROBES and not out.err):
            lines = [line for line in out.err.splitlines() if line.strip()]
            assert len(lines) == 1 and lines[0].startswith("Error: "), where
        return outcome

    yield run
    root.handlers[:], root.level = handlers, level


def with_options(url: str, options: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.urlencode({"options": options}, quote_via=urllib.parse.quote)
    joined = f"{parts.query}&{query}" if parts.query else query
    return urllib.parse.urlunsplit(parts._replace(query=joined))


@pytest.fixture
def seeded(db_url: str, settings: Any) -> str:
    """Job 1 waiting, job 2 failed (dead letter 1), schedule 's'."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(apps_compat.RUNS_TABLE)
        conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, args) VALUES "
            "('default', 'compat.add', '{\"a\": 1}'), "
            "('default', 'compat.add', '{\"a\": 2}')"
        )
        conn.execute("UPDATE procrastinate_jobs SET status = 'failed' WHERE id = 2")
    app = apps_compat.build(settings)
    schedules.add_schedule(
        settings, app, "s", "compat.add", cron="0 0 * * *", args={"a": 1}
    )
    return db_url


def snapshot(url: str) -> list[Any]:
    return [
        rows(url, "SELECT id, status::text, args FROM procrastinate_jobs ORDER BY id"),
        rows(url, "SELECT id, replayed_at FROM pgjobs.dead_letters ORDER BY id"),
        rows(url, "SELECT name, cron, paused FROM pgjobs.schedules ORDER BY name"),
        rows(url, "SELECT queue_name FROM pgjobs.paused_queues ORDER BY 1"),
        rows(url, "SELECT * FROM pgjobs.task_limits ORDER BY 1, 2, 3"),
    ]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bad_values_are_refused_in_one_line_and_write_nothing(
    invoke: Any, seeded: str
) -> None:
    before = snapshot(seeded)
    for command, (_, bad_invocations) in COMMANDS.items():
        for args in bad_invocations:
            outcome = invoke(seeded, command, args)
            assert outcome.code in (1, 2), (command, args, outcome)
    assert snapshot(seeded) == before


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_unreachable_database(invoke: Any, seeded: str) -> None:
    url = "postgresql://nobody:s3cret@127.0.0.1:1/nowhere"
    for command, (args, _) in COMMANDS.items():
        if args is None:
            continue
        outcome = invoke(url, command, args)
        if command in OFFLINE:
            assert outcome.code == 0, (command, outcome)
        else:
            assert outcome.code == 3, (command, outcome)
            assert "cannot connect to the database" in outcome.stderr
            assert "s3cret" not in outcome.stderr


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_read_only_server(invoke: Any, seeded: str) -> None:
    url = with_options(seeded, "-c default_transaction_read_only=on")
    before = snapshot(seeded)
    refused = set()
    for command, (args, _) in COMMANDS.items():
        if args is None:
            continue
        outcome = invoke(url, command, args)
        if outcome.code != 0 and "read-only" in outcome.stderr:
            refused.add(command)
    assert snapshot(seeded) == before
    # Every command that writes says the server is read-only; reads work.
    assert {
        "jobs cancel",
        "jobs retry",
        "dlq replay",
        "defer",
        "schedules add",
        "schedules change",
        "schedules pause",
        "schedules remove",
        "schedules run",
        "queues pause",
        "queues resume",
        "limits set",
        "demo",
    } <= refused
    assert not refused & {
        "jobs list",
        "jobs show",
        "dlq list",
        "stats",
        "roles",
        "queues list",
        "limits list",
    }


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_role_without_rights(invoke: Any, seeded: str) -> None:
    url = with_options(seeded, "-c role=pgjobs_monitor")
    before = snapshot(seeded)
    denied = set()
    for command, (args, _) in COMMANDS.items():
        if args is None:
            continue
        outcome = invoke(url, command, args)
        if outcome.code != 0 and "permission denied" in outcome.stderr:
            assert "pgjobs_monitor reads only the monitoring views" in outcome.stderr
            denied.add(command)
    assert snapshot(seeded) == before
    assert {
        "jobs list",
        "jobs show",
        "dlq list",
        "dlq show",
        "defer",
        "queues pause",
        "limits set",
    } <= denied
    # What the monitoring role is for keeps working.
    assert not denied & {
        "stats",
        "health",
        "metrics",
        "schedules health",
        "roles",
        "queues list",
    }
