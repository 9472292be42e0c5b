"""``pgjobs stats``, ``health``, ``defer``, ``metrics``, ``roles`` as a user runs them."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from typing import Any

import psycopg

from tests.support import ROOT, cli_env, run_cli
from tests.support.factories import add_dead_letter, add_job, add_worker, finished

APP = "tests.support.apps.monitoring.app"


@contextlib.contextmanager
def cli_process(*args: str, db_url: str) -> Iterator[subprocess.Popen[str]]:
    """A long-running ``pgjobs`` command, killed and reaped at the end."""
    with subprocess.Popen(
        [sys.executable, "-m", "pgjobs", *args],
        env=cli_env(db_url),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            yield proc
        finally:
            proc.kill()
            proc.communicate(timeout=10)


def test_stats_json_and_table(conn: psycopg.Connection[Any], db_url: str) -> None:
    worker = add_worker(conn)
    add_job(conn, queue="emails", events=[("deferred", 30)])
    add_job(
        conn, queue="emails", status="doing", worker_id=worker, events=[("started", 2)]
    )
    add_job(
        conn, task="send", queue="emails", status="succeeded", events=finished(100, 2)
    )
    add_job(
        conn, task="send", queue="emails", status="succeeded", events=finished(7200, 2)
    )
    conn.commit()

    result = run_cli("stats", "--json", db_url=db_url)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) == {
        "queues",
        "tasks",
        "workers",
        "stalled_jobs",
        "breakers",
        "problems",
    }
    [queue] = data["queues"]
    assert (
        queue["queue_name"],
        queue["waiting"],
        queue["running"],
        queue["succeeded"],
    ) == (
        "emails",
        1,
        1,
        1,
    )
    task = {t["task_name"]: t for t in data["tasks"]}["send"]
    assert (task["task_name"], task["runs"], task["p50_s"]) == ("send", 1, 2.0)
    assert [w["worker_id"] for w in data["workers"]] == [worker]

    wide = json.loads(
        run_cli("stats", "--json", "--window", "3h", db_url=db_url).stdout
    )
    assert wide["queues"][0]["succeeded"] == 2

    table = run_cli("stats", db_url=db_url)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0] == "Queues"
    assert lines[1].split() == [
        "QUEUE_NAME",
        "WAITING",
        "SCHEDULED",
        "RUNNING",
        "SUCCEEDED",
        "FAILED",
        "DEAD_LETTERS",
        "OLDEST_WAITING_S",
        "EXPIRED",
        "PAUSED",
    ]
    assert lines[2].split()[:6] == ["emails", "1", "0", "1", "1", "0"]
    assert "Tasks" in lines and "Workers" in lines


def test_stats_watch_prints_repeatedly(db_url: str) -> None:
    with cli_process("stats", "--json", "--watch", "0.2", db_url=db_url) as proc:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
    assert all(json.loads(line)["queues"] == [] for line in lines)


def test_stats_errors(db_url: str) -> None:
    bad = run_cli("stats", "--window", "yesterday", db_url=db_url)
    assert bad.returncode == 2 and "invalid age 'yesterday'" in bad.stderr  # usage
    assert bad.stderr.count("\n") == 1
    down = run_cli("stats", db_url="postgresql://nobody:secret@127.0.0.1:1/none")
    assert down.returncode == 3 and "secret" not in down.stderr
    assert "Traceback" not in down.stderr


def test_health_exit_codes(conn: psycopg.Connection[Any], db_url: str) -> None:
    healthy = run_cli("health", db_url=db_url)
    assert (healthy.returncode, healthy.stdout.strip()) == (0, "healthy")
    assert json.loads(run_cli("health", "--json", db_url=db_url).stdout) == []

    add_job(conn, queue="slow", events=[("deferred", 600)])
    add_dead_letter(conn, task="billing")
    conn.commit()
    sick = run_cli("health", "--json", db_url=db_url)
    assert sick.returncode == 1, sick.stderr
    assert [(p["check"], p["subject"]) for p in json.loads(sick.stdout)] == [
        ("new_dead_letters", "task billing"),
        ("queue_latency", "queue slow"),
    ]
    table = run_cli("health", db_url=db_url)
    assert table.returncode == 1
    assert table.stdout.splitlines()[0].split() == [
        "SEVERITY",
        "CHECK",
        "SUBJECT",
        "DETAIL",
    ]

    # Thresholds from options and from settings.
    relaxed = run_cli(
        "health", "--max-latency", "15m", "--dead-letter-threshold", "1", db_url=db_url
    )
    assert relaxed.returncode == 0, relaxed.stdout
    from_env = run_cli(
        "health",
        db_url=db_url,
        PGJOBS_HEALTH_MAX_LATENCY="900",
        PGJOBS_HEALTH_DEAD_LETTER_WINDOW="1",
    )
    assert from_env.returncode == 0, from_env.stdout

    # The check itself failing is 2 or more, never 1.
    bad_option = run_cli("health", "--max-latency", "soon", db_url=db_url)
    assert bad_option.returncode == 2 and bad_option.stderr.startswith(
        "Error: invalid age"
    )
    down = run_cli("health", db_url="postgresql://nobody@127.0.0.1:1/none")
    assert down.returncode == 3
    bad_setting = run_cli("health", db_url=db_url, PGJOBS_HEALTH_MAX_LATENCY="-1")
    assert bad_setting.returncode == 2
    assert "PGJOBS_HEALTH_MAX_LATENCY" in bad_setting.stderr


def job_rows(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    conn.rollback()
    return conn.execute(
        "SELECT id, task_name, queue_name, priority, lock, queueing_lock, args,"
        " scheduled_at IS NOT NULL FROM procrastinate_jobs ORDER BY id"
    ).fetchall()


def test_defer(conn: psycopg.Connection[Any], db_url: str) -> None:
    result = run_cli(
        "defer",
        "monitoring.add",
        "--args",
        '{"a": "2", "b": 3}',
        "--app",
        APP,
        "--json",
        db_url=db_url,
    )
    assert result.returncode == 0, result.stderr
    job_id = json.loads(result.stdout)["job_id"]
    # Validated and converted by the task's payload schema ("2" -> 2).
    assert job_rows(conn) == [
        (job_id, "monitoring.add", "math", 0, None, None, {"a": 2, "b": 3}, False)
    ]

    options = run_cli(
        "defer",
        "monitoring.add",
        "--args",
        '{"a": 1}',
        "--queue",
        "urgent",
        "--priority",
        "5",
        "--delay",
        "60",
        "--lock",
        "l1",
        "--queueing-lock",
        "q1",
        db_url=db_url,
        PGJOBS_APP=APP,
    )
    assert options.returncode == 0, options.stderr
    assert (
        options.stdout.startswith("job ")
        and "enqueued (monitoring.add)" in options.stdout
    )
    assert job_rows(conn)[-1][1:] == (
        "monitoring.add",
        "urgent",
        5,
        "l1",
        "q1",
        {"a": 1},
        True,
    )

    duplicate = run_cli(
        "defer",
        "monitoring.add",
        "--args",
        '{"a": 1}',
        "--queueing-lock",
        "q1",
        "--app",
        APP,
        db_url=db_url,
    )
    assert duplicate.returncode == 1
    assert (
        duplicate.stderr == "Error: a job with queueing lock 'q1' is already waiting\n"
    )
    ignored = run_cli(
        "defer",
        "monitoring.add",
        "--args",
        '{"a": 1}',
        "--queueing-lock",
        "q1",
        "--ignore-duplicate",
        "--json",
        "--app",
        APP,
        db_url=db_url,
    )
    assert ignored.returncode == 0 and json.loads(ignored.stdout)["job_id"] is None
    assert len(job_rows(conn)) == 2


def test_defer_errors_are_one_line(conn: psycopg.Connection[Any], db_url: str) -> None:
    cases = {
        ("monitoring.add", "--args", "{a: 1}"): "Error: --args is not valid JSON",
        ("monitoring.add", "--args", "[1, 2]"): "Error: --args must be a JSON object",
        ("nope", "--args", "{}"): "Error: unknown task 'nope'",
        ("monitoring.add", "--args", '{"a": "x"}'): (
            "Error: task 'monitoring.add': argument a:"
        ),
        ("monitoring.add", "--args", '{"b": 1}'): (
            "Error: task 'monitoring.add': missing argument(s) a"
        ),
        ("monitoring.add", "--args", '{"a": 1}', "--priority", "99999999999"): (
            "Error: priority 99999999999 is out of range"
        ),
    }
    for args, message in cases.items():
        result = run_cli("defer", *args, "--app", APP, db_url=db_url)
        assert result.returncode != 0, args
        assert result.stderr.startswith(message), (args, result.stderr)
        assert result.stderr.count("\n") == 1, result.stderr
    no_app = run_cli("defer", "monitoring.add", db_url=db_url)
    assert no_app.returncode == 2 and "no app given" in no_app.stderr
    bad_app = run_cli(
        "defer", "monitoring.add", "--app", "tests.nothing.app", db_url=db_url
    )
    assert bad_app.returncode == 2 and bad_app.stderr.startswith(
        "Error: cannot load app"
    )
    assert job_rows(conn) == []


def test_metrics_once(conn: psycopg.Connection[Any], db_url: str) -> None:
    add_job(conn, queue="emails", events=[("deferred", 30)])
    add_job(
        conn, task="send", queue="emails", status="succeeded", events=finished(100, 2)
    )
    add_dead_letter(conn, queue="emails", task="send")
    conn.execute(
        "INSERT INTO pgjobs.breakers (name, state, failure_threshold, recovery_window,"
        " success_threshold) VALUES ('crm', 'open', 3, '1 minute', 1)"
    )
    conn.commit()
    result = run_cli("metrics", db_url=db_url)
    assert result.returncode == 0, result.stderr
    samples = parse_metrics(result.stdout)
    assert samples["pgjobs_up"] == 1
    assert samples['pgjobs_queue_jobs{queue="emails",state="waiting"}'] == 1
    assert samples['pgjobs_queue_finished_jobs{queue="emails",status="succeeded"}'] == 1
    assert samples['pgjobs_queue_dead_letters{queue="emails"}'] == 1
    assert 30 <= samples['pgjobs_queue_oldest_waiting_seconds{queue="emails"}'] < 40
    assert samples['pgjobs_task_runs{outcome="succeeded",task="send"}'] == 1
    assert samples['pgjobs_task_run_seconds{quantile="0.5",task="send"}'] == 2
    assert samples['pgjobs_breaker_state{breaker="crm",state="open"}'] == 1
    assert samples['pgjobs_breaker_state{breaker="crm",state="closed"}'] == 0
    assert (
        samples['pgjobs_health_problems{check="new_dead_letters",severity="warning"}']
        == 1
    )
    assert samples["pgjobs_stalled_jobs"] == 0

    down = run_cli("metrics", db_url="postgresql://nobody@127.0.0.1:1/none")
    assert down.returncode == 3 and "Traceback" not in down.stderr


def parse_metrics(text: str) -> dict[str, float]:
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_metrics_endpoint_over_http(conn: psycopg.Connection[Any], db_url: str) -> None:
    add_job(conn, queue="emails", events=[("deferred", 30)])
    conn.commit()
    with cli_process(
        "metrics", "--port", "0", "--addr", "127.0.0.1", db_url=db_url
    ) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("serving metrics on http://127.0.0.1:"), line
        url = line.split()[-1]
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            first = parse_metrics(response.read().decode())
        assert first['pgjobs_queue_jobs{queue="emails",state="waiting"}'] == 1
        # Each scrape reads the views again.
        add_job(conn, queue="emails", events=[("deferred", 1)])
        conn.commit()
        with urllib.request.urlopen(url, timeout=10) as response:
            second = parse_metrics(response.read().decode())
        assert second['pgjobs_queue_jobs{queue="emails",state="waiting"}'] == 2


def test_metrics_port_in_use(db_url: str) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = run_cli(
            "metrics", "--port", str(port), "--addr", "127.0.0.1", db_url=db_url
        )
    assert result.returncode == 1
    assert result.stderr.startswith(f"Error: cannot serve metrics on 127.0.0.1:{port}")


def test_help_lists_the_monitoring_commands() -> None:
    result = run_cli("--help", db_url=None)
    commands = result.stdout.split("Commands:")[1]
    for name in ("stats", "health", "defer", "prune", "metrics", "roles"):
        assert f"\n  {name} " in commands
    health = run_cli("health", "--help", db_url=None).stdout
    assert "0 healthy, 1 problems found, 2 or more" in " ".join(health.split())
