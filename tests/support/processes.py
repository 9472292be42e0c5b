"""The suite's one launcher of worker (and other ``python -m``) processes.

Each process writes its output to a file of its own (a pipe nobody reads can
fill up and block the process); ``output()`` reads it back. Every process
still running at the end of the test is killed and reaped.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
from typing import IO, Any

import psycopg

from tests.support import ROOT, cli_env, wait_for


class Processes:
    """Processes of one test, on one database."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self._started: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []
        self._registered = 0

    def start(
        self, *command: str, registered: bool = False, **env: str
    ) -> subprocess.Popen[bytes]:
        """``python -m *command`` with the database's environment and
        ``env``; with ``registered``, once it appears in procrastinate_workers
        (as many rows as workers started so)."""
        log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        process = subprocess.Popen(
            [sys.executable, "-m", *command],
            env=cli_env(self.db_url, **env),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self._started.append((process, log))
        if registered:
            self._registered += 1
            count = self._registered
            wait_for(lambda: self._workers() >= count, what="the worker's registration")
        return process

    def worker(self, *args: str, **env: str) -> subprocess.Popen[bytes]:
        """``pgjobs worker *args``."""
        return self.start("pgjobs", "worker", *args, **env)

    def output(self, process: subprocess.Popen[bytes]) -> str:
        """What ``process`` has printed so far."""
        log = self._log(process)
        log.seek(0)
        return log.read().decode(errors="replace")

    def finish(
        self,
        process: subprocess.Popen[bytes],
        timeout: float = 30,
        *,
        stop: bool = False,
    ) -> str:
        """Wait for ``process`` to exit (after SIGTERM with ``stop``); its output."""
        if stop:
            process.send_signal(signal.SIGTERM)
        process.wait(timeout)
        return self.output(process)

    def close(self) -> None:
        for process, log in self._started:
            if process.poll() is None:
                process.kill()
                process.wait()
            log.close()

    def _log(self, process: subprocess.Popen[bytes]) -> IO[bytes]:
        return next(log for p, log in self._started if p is process)

    def _workers(self) -> int:
        with psycopg.connect(self.db_url) as conn:
            row: Any = conn.execute(
                "SELECT count(*) FROM procrastinate_workers"
            ).fetchone()
            return int(row[0])
