"""Structured (JSON) logs: flat job keys on start/finish/failure, no secrets."""

from __future__ import annotations

import json
import logging
from typing import Any

import psycopg
import pytest

from pgjobs.monitoring import logs
from tests.support import run_cli


@pytest.mark.slow
def test_worker_json_lines_carry_job_fields(
    db_url: str, conn: psycopg.Connection[Any]
) -> None:
    conn.execute(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, args, attempts) VALUES"
        " ('math', 'monitoring.add', '{\"a\": 1, \"b\": 2}', 0),"
        " ('default', 'monitoring.explode', '{\"reason\": \"boom\"}', 2)"
    )
    conn.commit()
    [ok_id, bad_id] = [
        r[0] for r in conn.execute("SELECT id FROM procrastinate_jobs ORDER BY id")
    ]
    result = run_cli(
        "worker",
        "--app",
        "tests.support.apps.monitoring.app",
        "--one-shot",
        db_url=db_url,
        PGJOBS_LOG_FORMAT="json",
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    jobs = [line for line in lines if "outcome" in line]
    by_outcome = {(line["job_id"], line["outcome"]): line for line in jobs}

    started = by_outcome[(ok_id, "started")]
    assert (started["task"], started["queue"], started["attempt"]) == (
        "monitoring.add",
        "math",
        1,
    )
    assert "duration_s" not in started
    done = by_outcome[(ok_id, "succeeded")]
    assert done["level"] == "info" and done["duration_s"] >= 0
    failed = by_outcome[(bad_id, "failed")]
    assert (failed["task"], failed["queue"], failed["attempt"]) == (
        "monitoring.explode",
        "default",
        3,
    )
    assert failed["level"] == "error" and "RuntimeError: boom" in failed["traceback"]
    assert isinstance(failed["duration_s"], float)
    # Job arguments stay out of the structured fields.
    for line in jobs:
        assert "job" not in line and "task_kwargs" not in line
        assert "boom'" not in line["message"] and "b=2" not in line["message"]
        assert isinstance(line["worker_id"], int)
    # The database URL never shows a password (there is none here; see below).
    assert all(line.keys() >= {"time", "level", "logger", "message"} for line in lines)


def test_json_formatter_flattens_and_redacts() -> None:
    record = logging.makeLogRecord(
        {
            "name": "procrastinate.worker",
            "levelno": logging.INFO,
            "levelname": "INFO",
            "msg": "Job sync[7](token='abc') failed: postgresql://app:hunter2@db/app",
            "action": "job_error_retry",
            "job": {
                "id": 7,
                "task_name": "sync",
                "queue": "crm",
                "attempts": 1,
                "task_kwargs": {"token": "abc"},
                "call_string": "sync[7](token='abc')",
            },
            "worker": {"name": "w1", "worker_id": 3, "job_id": 7, "queues": []},
            "duration": 1.25,
            "start_timestamp": 1.0,
            "dsn": "host=db password=hunter2 user=app",
        }
    )
    line = json.loads(logs.JsonFormatter().format(record))
    assert {k: line[k] for k in ("job_id", "task", "queue", "attempt")} == {
        "job_id": 7,
        "task": "sync",
        "queue": "crm",
        "attempt": 2,
    }
    assert (line["outcome"], line["duration_s"], line["worker_id"]) == (
        "retried",
        1.25,
        3,
    )
    assert "hunter2" not in json.dumps(line) and "abc" not in json.dumps(line)
    assert line["dsn"] == "host=db password=*** user=app"
    assert line["message"] == "Job sync[7] failed: postgresql://app:***@db/app"
