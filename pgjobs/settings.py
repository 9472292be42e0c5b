"""pgjobs settings, read once from the environment and ``.env``.

Build a ``Settings`` with ``load_settings()`` at start-up and pass it down;
nothing else in pgjobs reads ``os.environ``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import psycopg
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from pgjobs.errors import ConfigError

ENV_PREFIX = "PGJOBS_"


class Settings(BaseSettings):
    """Every setting is an environment variable ``PGJOBS_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL (postgresql://user:pass@host:5432/db). "
        "Unset: pgjobs starts its embedded PostgreSQL.",
    )
    embedded_dir: Path = Field(
        default=Path(".pgjobs/postgres"),
        description="Data folder of the embedded PostgreSQL (kept between runs).",
    )
    app: str | None = Field(
        default=None,
        description="Dotted path of your App, e.g. myproject.jobs.app "
        "(default for --app).",
    )
    concurrency: int = Field(
        default=10, ge=1, le=1000, description="Jobs a worker runs at once."
    )
    prefetch: int = Field(
        default=0,
        ge=0,
        le=1000,
        description="Jobs a worker claims beyond its free slots, to start as "
        "slots free (throughput for many short jobs; they are held meanwhile).",
    )
    shutdown_grace: float = Field(
        default=30.0,
        ge=0,
        description="Seconds a stopping worker lets running jobs finish; the "
        "jobs still running then go back to the queue (README: Deploys).",
    )
    max_interruptions: int = Field(
        default=3,
        ge=1,
        le=1000,
        description="Shutdown interruptions of one job that count as failed "
        "attempts from this one on (the ones before are free; 1: every one counts).",
    )
    pool_size: int = Field(
        default=10, ge=1, le=200, description="Maximum connections per process."
    )
    prepare_threshold: int | None = Field(
        default=None,
        ge=0,
        description="Client-side prepared statements of pgjobs' own "
        "connections (psycopg's prepare_threshold): unset = off, as a "
        "transaction pooler (PgBouncer) needs; 0 or more turns them on on "
        "direct connections. Also accepted as ?prepare_threshold= in the URL.",
    )
    listen_database_url: str | None = Field(
        default=None,
        description="URL of a direct (or session-pooled) connection the "
        "worker uses only for LISTEN, one per process, when "
        "PGJOBS_DATABASE_URL goes through a transaction pooler.",
    )
    poll_interval: float | None = Field(
        default=None,
        gt=0,
        le=3600,
        description="Seconds between two looks for new jobs by an idle worker "
        "(default 5 when LISTEN/NOTIFY reaches it, 1 when it does not).",
    )
    push_jobs: bool = Field(
        default=True,
        description="A worker that waits for work (LISTEN/NOTIFY reaching it, "
        "concurrency 2 or more) keeps a slot for one new job that the enqueue "
        "hands it in the notification, claimed in the enqueueing transaction: "
        "no claim of its own before it starts (pgjobs.worker.pushes).",
    )
    connect_timeout: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="Seconds an admin command waits for a connection, "
        "including a pooler's wait for a free server connection.",
    )
    heartbeat_interval: float = Field(
        default=10.0,
        gt=0,
        description="Seconds between a worker's heartbeats in procrastinate_workers.",
    )
    stalled_after: float = Field(
        default=30.0,
        gt=0,
        description="Seconds without heartbeat after which a worker is presumed "
        "dead and its running jobs are rescued (must exceed heartbeat_interval).",
    )
    stalled_check_interval: float = Field(
        default=10.0,
        gt=0,
        description="Seconds between two looks for stalled jobs by each worker.",
    )
    expiry_interval: float = Field(
        default=5.0,
        gt=0,
        description="Seconds between two sweeps by each worker for waiting jobs "
        "whose start-by deadline (expires_at / expires_in) passed.",
    )
    event_loop: Literal["auto", "uvloop", "asyncio"] = Field(
        default="auto",
        description="Event loop of `pgjobs worker`: uvloop when installed "
        "(pgjobs[uvloop]) with auto, or always this one.",
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="Log lines as text or one JSON object each."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Minimum level of log lines."
    )
    # Monitoring (pgjobs.monitoring): unset means the database's own setting
    # (pgjobs.stats_window...) or the views' default.
    stats_window: float | None = Field(
        default=None,
        gt=0,
        description="Seconds of history in stats and metrics (default 3600).",
    )
    health_max_latency: float | None = Field(
        default=None,
        gt=0,
        description="Seconds the oldest waiting job may wait before `pgjobs "
        "health` reports its queue (default 300).",
    )
    health_dead_letter_window: float | None = Field(
        default=None,
        gt=0,
        description="Seconds in which new dead letters count for health "
        "(default 3600).",
    )
    health_dead_letter_threshold: int | None = Field(
        default=None,
        ge=0,
        description="New dead letters per task tolerated by health (default 0).",
    )
    health_max_dead_rows: int | None = Field(
        default=None,
        ge=0,
        description="Dead rows in the jobs or events table before health reports "
        "it (default 100000, or a tenth of the live rows when more).",
    )
    health_max_replication_lag: float | None = Field(
        default=None,
        gt=0,
        description="Seconds a hot standby may replay behind its primary before "
        "health reports it (default 30).",
    )
    health_max_xmin_age: float | None = Field(
        default=None,
        gt=0,
        description="Seconds a transaction (or prepared transaction, or "
        "replication slot) may hold back the xmin horizon before health "
        "reports it (default 300).",
    )
    # Retention (pgjobs.retention): enabled when any age or keep-last is set.
    retention_succeeded_days: float | None = Field(
        default=None, ge=0, description="Delete succeeded jobs after this many days."
    )
    retention_failed_days: float | None = Field(
        default=None,
        ge=0,
        description="Delete failed, cancelled and aborted jobs (and error "
        "history) after this many days.",
    )
    retention_dead_letters_days: float | None = Field(
        default=None, ge=0, description="Delete dead letters after this many days."
    )
    retention_keep_succeeded: int | None = Field(
        default=None,
        ge=0,
        description="Keep at most this many succeeded jobs per task.",
    )
    retention_keep_failed: int | None = Field(
        default=None,
        ge=0,
        description="Keep at most this many failed/cancelled/aborted jobs per task.",
    )
    retention_stats_rollups_days: float = Field(
        default=7,
        gt=0,
        description="Delete pgjobs.task_stats' per-minute rollups after this many "
        "days, in every worker and every prune (a stats window longer than this "
        "counts only what is kept).",
    )
    retention_schedule: str = Field(
        default="0 * * * *",
        description="Cron expression of the built-in retention task.",
    )
    retention_batch_size: int = Field(
        default=1000, ge=1, le=100_000, description="Rows deleted per statement."
    )
    retention_batch_pause: float = Field(
        default=0.05,
        ge=0,
        le=60,
        description="Seconds the periodic retention task pauses between two "
        "delete batches (keeps a large deletion from delaying claims).",
    )

    # Schedules (pgjobs.schedules).
    schedule_poll_interval: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="Seconds between two looks for due runtime schedules by "
        "each worker (bounds how late a tick or a schedule change is seen).",
    )
    deployment_id: str | None = Field(
        default=None,
        description="Release/deployment name (e.g. a git SHA): run-once-after-"
        "start tasks run once per value. Unset: once per continuous period "
        "with at least one live worker.",
    )

    # Dashboard (pgjobs.dashboard) and the event stream (pgjobs.events).
    dashboard_username: str | None = Field(
        default=None,
        description="User name of the dashboard's HTTP basic auth (with "
        "dashboard_password).",
    )
    dashboard_password: SecretStr | None = Field(
        default=None,
        description="Password of the dashboard's HTTP basic auth; required to "
        "bind an address other than localhost.",
    )
    dashboard_statement_timeout: float = Field(
        default=2.0,
        gt=0,
        le=600,
        description="Seconds any one dashboard query may run before Postgres "
        "cancels it.",
    )
    events_listen: bool = Field(
        default=True,
        description="The event stream wakes on procrastinate's LISTEN/NOTIFY "
        "channel as well as polling; false behind a transaction pooler.",
    )
    events_poll_interval: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="Seconds between two reads of new job events by "
        "`pgjobs events --follow` and the dashboard's live updates.",
    )

    @field_validator("database_url", "listen_database_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        value = value.strip()
        if value.startswith(("postgresql://", "postgres://")):
            return value
        # libpq's key=value form (host=a,b port=5432,5432 dbname=app ...).
        try:
            keys = psycopg.conninfo.conninfo_to_dict(value) if "=" in value else {}
        except psycopg.ProgrammingError:
            keys = {}
        if not keys:
            raise ValueError(
                "must be a postgresql:// URL or a key=value connection string "
                "(host=... dbname=...)"
            )
        return value

    @field_validator("stalled_after")
    @classmethod
    def _check_stalled_after(cls, value: float, info: ValidationInfo) -> float:
        heartbeat = info.data.get("heartbeat_interval")
        if heartbeat is not None and value <= heartbeat:
            raise ValueError(
                f"must be greater than PGJOBS_HEARTBEAT_INTERVAL ({heartbeat})"
            )
        return value

    @field_validator("dashboard_username", "dashboard_password", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and value == "" else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


def load_settings(**overrides: object) -> Settings:
    """Read settings; an invalid one raises ``ConfigError`` naming its variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else "?"
        name = ENV_PREFIX + field.upper()
        message = error["msg"].removeprefix("Value error, ")
        raise ConfigError(f"invalid setting {name}: {message}") from None
