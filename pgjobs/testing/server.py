"""The PostgreSQL server tests run against, and a fresh database per test.

``PGJOBS_TEST_DATABASE_URL`` names a server (any database on it; tests create
their own next to it, named after the process id). Unset, an embedded
PostgreSQL starts in a temporary folder. Each test gets a database cloned
from a template that was migrated once (a few tens of milliseconds), which
is what the ``pgjobs_db`` fixture of ``pgjobs.testing`` hands out.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import urllib.parse
from pathlib import Path

import psycopg
from psycopg import sql

from pgjobs.db import embedded, schema


def with_dbname(url: str, dbname: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + dbname))


class PgServer:
    """One server per test process: a migrated template and its clones."""

    def __init__(self) -> None:
        self._tmp: Path | None = None
        url = os.environ.get("PGJOBS_TEST_DATABASE_URL")
        if not url:
            self._tmp = Path(tempfile.mkdtemp(prefix="pgjobs-test-"))
            url = embedded.start(self._tmp / "pg")
        self.base_url = url
        self.kind = "external" if self._tmp is None else "embedded"
        self._counter = itertools.count()
        self.prefix = f"pgjobs_t{os.getpid()}"
        self.template = f"{self.prefix}_template"
        self.template_url = self.create_database(self.template, template=None)
        schema.upgrade(self.template_url)

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.base_url, autocommit=True)

    def create_database(self, name: str, template: str | None = "default") -> str:
        template = self.template if template == "default" else template
        with self.admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(name)
                )
            )
            if template is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            else:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                        sql.Identifier(name), sql.Identifier(template)
                    )
                )
        return with_dbname(self.base_url, name)

    def new_database(self, migrated: bool = True) -> tuple[str, str]:
        """(name, URL) of a new database: migrated to head, or empty."""
        name = f"{self.prefix}_{next(self._counter)}"
        return name, self.create_database(name, "default" if migrated else None)

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(name)
                )
            )

    def close(self) -> None:
        self.drop_database(self.template)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
