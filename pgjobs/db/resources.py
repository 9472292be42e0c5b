"""Where pgjobs' SQL files and alembic scripts are.

In a wheel they are packaged under ``pgjobs/_data`` (see pyproject.toml); in a
source checkout they are the top-level ``sql/`` and ``migrations/`` folders.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent.parent  # pgjobs/


def _data_dir(name: str) -> Path:
    for candidate in (_PACKAGE_DIR / "_data" / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"pgjobs data folder {name!r} is missing from the install")


def sql_dir() -> Path:
    return _data_dir("sql")


def migrations_dir() -> Path:
    return _data_dir("migrations")


def read_sql(relative_path: str) -> str:
    """Text of a file under ``sql/``, e.g. ``migrations/0002_pgjobs_base.up.sql``."""
    return (sql_dir() / relative_path).read_text(encoding="utf-8")
