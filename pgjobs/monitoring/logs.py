"""Log set-up for pgjobs processes: text for people, JSON lines for machines."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from pgjobs.db.connections import redact
from pgjobs.settings import Settings

# Attributes every LogRecord has; anything else was passed in ``extra``.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

#: procrastinate's worker ``action`` -> the job outcome a log line reports.
OUTCOMES = {
    "start_job": "started",
    "job_success": "succeeded",
    "job_error": "failed",
    "job_error_retry": "retried",
    "job_aborted": "aborted",
    "job_aborted_retry": "retried",
}

# procrastinate's nested job details (which hold the job's arguments) and
# timing fields: replaced by flat keys in JSON lines.
_REPLACED = {"job", "worker", "start_timestamp", "end_timestamp", "duration", "result"}


def job_fields(extra: dict[str, Any]) -> dict[str, Any]:
    """Flat job keys from procrastinate's worker log ``extra``.

    ``job_id, task, queue, attempt`` (1 for the first run), ``duration_s``
    and ``outcome`` (started/succeeded/failed/retried/aborted), plus
    ``worker``/``worker_id``. Job arguments are left out.
    """
    fields: dict[str, Any] = {}
    job = extra.get("job")
    if isinstance(job, dict):
        fields["job_id"] = job.get("id")
        fields["task"] = job.get("task_name")
        fields["queue"] = job.get("queue")
        attempts = job.get("attempts")
        fields["attempt"] = attempts + 1 if isinstance(attempts, int) else None
    worker = extra.get("worker")
    if isinstance(worker, dict):
        fields["worker"] = worker.get("name")
        fields["worker_id"] = worker.get("worker_id")
    outcome = OUTCOMES.get(str(extra.get("action")))
    if outcome is not None:
        fields["outcome"] = outcome
    if outcome != "started" and isinstance(extra.get("duration"), int | float):
        fields["duration_s"] = round(float(extra["duration"]), 6)
    return fields


def _without_arguments(message: str, extra: dict[str, Any]) -> str:
    """procrastinate's ``task[id](arg=...)`` call string, shortened to ``task[id]``."""
    job = extra.get("job")
    if isinstance(job, dict) and isinstance(job.get("call_string"), str):
        return message.replace(
            job["call_string"], f"{job.get('task_name')}[{job.get('id')}]"
        )
    return message


def _redacted(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with procrastinate's ``extra`` fields flattened.

    Job lines carry ``job_id, task, queue, attempt, duration_s, outcome``;
    passwords in URLs and conninfo strings are masked.
    """

    def format(self, record: logging.LogRecord) -> str:
        extra = {
            key: value
            for key, value in record.__dict__.items()
            if key not in _STANDARD and not key.startswith("_")
        }
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(_without_arguments(record.getMessage(), extra)),
        }
        entry.update(job_fields(extra))
        for key, value in extra.items():
            if key not in _REPLACED:
                entry[key] = _redacted(value)
        if record.exc_info:
            entry["traceback"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # Set-up chatter that says nothing an operator needs at INFO.
    for name in ("alembic", "procrastinate.blueprints", "procrastinate.periodic"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    # One "discarding closed connection" per pooled connection after an
    # outage: pgjobs.worker already says it once.
    logging.getLogger("psycopg.pool").setLevel(max(logging.ERROR, root.level))
