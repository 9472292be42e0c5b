"""The pytest plugin (entry point ``pytest11``): pgjobs' fixtures.

Loaded by pytest wherever pgjobs is installed. Nothing starts until a test
asks for a fixture: the server (embedded, or ``PGJOBS_TEST_DATABASE_URL``)
on first use, once per test process.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pgjobs.settings import Settings
    from pgjobs.testing.server import PgServer


@pytest.fixture(scope="session")
def pgjobs_server() -> Iterator[PgServer]:
    """The test server, with a template database migrated to pgjobs' head."""
    from pgjobs.testing.server import PgServer

    server = PgServer()
    yield server
    server.close()


@pytest.fixture
def pgjobs_db(pgjobs_server: PgServer) -> Iterator[str]:
    """URL of a fresh database migrated to head, dropped after the test."""
    name, url = pgjobs_server.new_database()
    yield url
    pgjobs_server.drop_database(name)


@pytest.fixture
def pgjobs_settings(pgjobs_db: str) -> Settings:
    """``Settings`` on ``pgjobs_db`` (other settings from PGJOBS_* / defaults)."""
    from pgjobs.settings import load_settings

    return load_settings(database_url=pgjobs_db)
