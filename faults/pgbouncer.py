"""A PgBouncer the fault suite and the tests start in front of a server.

Writes a ``pgbouncer.ini`` and a ``userlist.txt`` in a temporary folder,
starts Debian's ``/usr/sbin/pgbouncer`` (or ``PGJOBS_PGBOUNCER``) on a free
port of 127.0.0.1 in front of the server of a given URL, in transaction or
session mode, and stops it. Client authentication is ``trust`` for the
server URL's user (the suite's servers trust local connections too).

    with PgBouncer(url, mode="transaction", pool_size=5) as bouncer:
        psycopg.connect(bouncer.url)          # the same database, pooled
        bouncer.show("SERVERS")               # the admin console's rows
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg.conninfo import conninfo_to_dict

DEFAULT_BINARY = "/usr/sbin/pgbouncer"
Mode = Literal["transaction", "session"]


def binary() -> str | None:
    """The pgbouncer program to run, or None when it is not installed."""
    found = os.environ.get("PGJOBS_PGBOUNCER") or shutil.which("pgbouncer")
    if found:
        return found
    return DEFAULT_BINARY if os.access(DEFAULT_BINARY, os.X_OK) else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _run_as(host: str) -> str:
    """Root only: the user pgbouncer runs as, one that can reach the server
    (the owner of its socket folder, else ``nobody``)."""
    if host.startswith("/"):
        return pwd.getpwuid(os.stat(host).st_uid).pw_name
    return "nobody"


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class PgBouncer:
    """One pgbouncer process; ``url`` is the pooled URL of the same database."""

    def __init__(
        self,
        server_url: str,
        *,
        mode: Mode = "transaction",
        pool_size: int = 20,
        max_client_conn: int = 500,
        query_wait_timeout: float = 120,
        extra: dict[str, str] | None = None,
    ) -> None:
        program = binary()
        if program is None:
            raise FileNotFoundError(
                "pgbouncer is not installed (apt install pgbouncer)"
            )
        params = conninfo_to_dict(server_url)
        self.user = str(params.get("user") or "postgres")
        self.dbname = str(params.get("dbname") or self.user)
        self.mode = mode
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pgjobs-pgbouncer-"))
        target = {
            k: str(v)
            for k, v in params.items()
            if k in ("host", "port", "user", "password", "dbname") and v is not None
        }
        target.setdefault("host", "127.0.0.1")
        database_line = " ".join(f"{k}={_quote(v)}" for k, v in target.items())
        settings = {
            "listen_addr": "127.0.0.1",
            "listen_port": str(self.port),
            "unix_socket_dir": "",
            "auth_type": "trust",
            "auth_file": str(self.dir / "userlist.txt"),
            "admin_users": self.user,
            "pool_mode": mode,
            "default_pool_size": str(pool_size),
            "max_client_conn": str(max_client_conn),
            "query_wait_timeout": str(int(query_wait_timeout)),
            "server_reset_query": "DISCARD ALL",
            "ignore_startup_parameters": "extra_float_digits,options",
            "logfile": str(self.dir / "pgbouncer.log"),
            "pidfile": str(self.dir / "pgbouncer.pid"),
            **(extra or {}),
        }
        ini = ["[databases]", f"{self.dbname} = {database_line}", "", "[pgbouncer]"]
        ini += [f"{key} = {value}" for key, value in settings.items()]
        (self.dir / "pgbouncer.ini").write_text("\n".join(ini) + "\n")
        (self.dir / "userlist.txt").write_text(f'"{self.user}" ""\n')
        command = [program, str(self.dir / "pgbouncer.ini")]
        if os.geteuid() == 0:  # pgbouncer refuses to run as root
            owner = _run_as(target["host"])
            command[1:1] = ["-u", owner]
            for path in (self.dir, *self.dir.iterdir()):
                shutil.chown(path, owner)
        self._proc = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        self.url = urllib.parse.urlunsplit(
            (
                "postgresql",
                f"{self.user}@127.0.0.1:{self.port}",
                f"/{self.dbname}",
                "",
                "",
            )
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 15
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"pgbouncer exited at start: {self.log()[-500:]}")
            try:
                psycopg.connect(
                    self.admin_url, autocommit=True, connect_timeout=2
                ).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.05)

    @property
    def admin_url(self) -> str:
        """The admin console (``SHOW POOLS``, ``SHOW SERVERS``...)."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/pgbouncer"

    def show(self, what: str) -> list[dict[str, Any]]:
        """Rows of ``SHOW <what>`` on the admin console, as dicts."""
        allowed = {"SERVERS", "CLIENTS", "POOLS", "STATS", "CONFIG", "DATABASES"}
        if what.upper() not in allowed:
            raise ValueError(f"SHOW {what} is not one of {sorted(allowed)}")
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            # The admin console takes the simple query protocol only.
            cur = conn.cursor()
            cur.execute(f"SHOW {what.upper()}", prepare=False)  # type: ignore[arg-type]
            names = [c.name for c in cur.description or []]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def log(self) -> str:
        path = self.dir / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)  # immediate shutdown
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PgBouncer:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self.stop()
