"""pgjobs: Postgres-native background jobs for Python, built on procrastinate."""

from pgjobs.app import App
from pgjobs.errors import (
    AlreadyEnqueued,
    ConfigError,
    DatabaseUnavailable,
    InvalidJobOptions,
    InvalidPayload,
    PgjobsError,
    SchemaError,
    TaskNotFound,
)
from pgjobs.settings import Settings, load_settings

__all__ = [
    "AlreadyEnqueued",
    "App",
    "ConfigError",
    "DatabaseUnavailable",
    "InvalidJobOptions",
    "InvalidPayload",
    "PgjobsError",
    "SchemaError",
    "Settings",
    "TaskNotFound",
    "load_settings",
]
