"""Which database pgjobs talks to, and opening connections to it.

Client-side prepared statements are off on every connection pgjobs opens
(psycopg's ``prepare_threshold=None``): behind a transaction pooler such as
PgBouncer 1.18, a statement prepared by one client lands on a server
connection another client then uses ("prepared statement _pg3_0 already
exists", or a statement bound to another client's statement). They are
turned on with ``PGJOBS_PREPARE_THRESHOLD`` or, as libpq users expect to
configure a connection, in the URL: ``?prepare_threshold=0`` (or
``prepare_threshold=0`` in a key=value string). libpq does not know that
parameter, so it is taken out of the conninfo before libpq sees it.
"""

from __future__ import annotations

import logging
import re
import select
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from pgjobs.db import embedded
from pgjobs.errors import DatabaseUnavailable, ReadOnlyDatabase
from pgjobs.settings import Settings

#: What an admin function works on: settings or a URL (it opens an autocommit
#: connection for the call) or the caller's own connection (it joins the
#: caller's transaction; the caller commits).
Target = Settings | str | psycopg.Connection[Any]

logger = logging.getLogger("pgjobs.worker")
_T = TypeVar("_T")

_PASSWORD_IN_URL = re.compile(r"(?P<head>://[^:/@?#]*:)(?P<password>[^@/?#]*)@")
_PASSWORD_IN_DSN = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<password>'[^']*'|\S+)")


_PREPARE_IN_DSN = re.compile(r"\s*\bprepare_threshold\s*=\s*(?P<value>'[^']*'|\S*)")
_OFF = ("", "none", "off", "null")


def _threshold(text: str) -> int | None:
    value = text.strip().strip("'").strip().lower()
    if value in _OFF:
        return None
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise DatabaseUnavailable(
            f"invalid database URL: prepare_threshold must be a whole number "
            f">= 0 or none, got {text!r}"
        )
    return number


def options(info: str, settings: Settings | None = None) -> tuple[str, dict[str, Any]]:
    """``info`` without pgjobs' own parameters, and psycopg's connect options.

    ``prepare_threshold`` in the URL wins over ``PGJOBS_PREPARE_THRESHOLD``;
    neither set: None (no client-side prepared statements).
    """
    threshold = settings.prepare_threshold if settings is not None else None
    if info.startswith(("postgresql://", "postgres://")):
        parts = urllib.parse.urlsplit(info)
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        kept = [(k, v) for k, v in query if k != "prepare_threshold"]
        for key, value in query:
            if key == "prepare_threshold":
                threshold = _threshold(value)
        if len(kept) != len(query):
            info = urllib.parse.urlunsplit(
                parts._replace(query=urllib.parse.urlencode(kept))
            )
    else:
        found = _PREPARE_IN_DSN.search(info)
        if found:
            threshold = _threshold(found["value"])
            info = _PREPARE_IN_DSN.sub("", info).strip()
    return info, {"prepare_threshold": threshold}


def redact(text: str) -> str:
    """Hide passwords of URLs or key=value conninfo strings inside ``text``."""
    text = _PASSWORD_IN_URL.sub(lambda m: m["head"] + "***@", text)
    return _PASSWORD_IN_DSN.sub(lambda m: m["head"] + "***", text)


def conninfo(settings: Settings) -> str:
    """The configured database URL, or the embedded server's (started on demand)."""
    if settings.database_url:
        return settings.database_url
    return embedded.start(*embedded_dir(settings))


def embedded_dir(settings: Settings) -> tuple[Path, str]:
    """The embedded server's data folder, and how it was chosen."""
    if "embedded_dir" in settings.model_fields_set:
        return settings.embedded_dir.expanduser().resolve(), "PGJOBS_EMBEDDED_DIR"
    return embedded.default_data_dir()


def describe(settings: Settings) -> str:
    """A one-line, password-free description of the target database."""
    if settings.database_url:
        return redact(settings.database_url)
    folder, why = embedded_dir(settings)
    return f"embedded PostgreSQL in {folder} ({why})"


def connect(
    target: Settings | str, *, wait: float | None = None, **kwargs: Any
) -> psycopg.Connection[Any]:
    """Open a connection; an unreachable database raises ``DatabaseUnavailable``.

    ``wait``: also check, within that many seconds, that a statement gets
    through (a pooler may accept the connection, then queue its statements
    while its server connections are all taken).
    """
    settings = target if isinstance(target, Settings) else None
    info = conninfo(target) if isinstance(target, Settings) else target
    info, defaults = options(info, settings)
    timeout = settings.connect_timeout if settings is not None else 10.0
    try:
        conn = psycopg.connect(
            info, connect_timeout=max(1, round(timeout)), **{**defaults, **kwargs}
        )
    except psycopg.OperationalError as exc:
        raise unavailable(exc, info) from None
    except psycopg.ProgrammingError as exc:  # malformed conninfo
        raise DatabaseUnavailable(f"invalid database URL: {redact(str(exc))}") from None
    if wait is not None:
        try:
            _first_statement(conn, wait)
        except psycopg.Error as exc:
            conn.close()
            raise unavailable(exc, info) from None
        except BaseException:
            conn.close()
            raise
    return conn


def _first_statement(conn: psycopg.Connection[Any], timeout: float) -> None:
    """Send ``SELECT 1`` and wait at most ``timeout`` s for its reply."""
    pgconn = conn.pgconn
    deadline = time.monotonic() + timeout
    pgconn.send_query(b"SELECT 1")
    while pgconn.flush():
        select.select([], [pgconn.socket], [], max(0.0, deadline - time.monotonic()))
    while True:
        pgconn.consume_input()
        if not pgconn.is_busy():
            break
        left = deadline - time.monotonic()
        readable, _, _ = select.select([pgconn.socket], [], [], max(0.0, left))
        if not readable and time.monotonic() >= deadline:
            raise DatabaseUnavailable(
                f"no reply from the database within {timeout:g} s (a pooler "
                "queueing this connection while all its server connections are "
                "taken?): raise the pool size of the pooler (PgBouncer "
                "default_pool_size) or PGJOBS_CONNECT_TIMEOUT"
            )
    while (result := pgconn.get_result()) is not None:
        if result.status != psycopg.pq.ExecStatus.TUPLES_OK:
            message = result.error_message.decode(errors="replace").strip()
            raise DatabaseUnavailable(f"the database refused a statement: {message}")


def unavailable(exc: BaseException, info: str) -> DatabaseUnavailable:
    first_line = redact(str(exc)).strip().splitlines()[0] if str(exc) else repr(exc)
    return DatabaseUnavailable(
        f"cannot connect to the database {redact(info)}: {first_line}"
    )


@contextmanager
def connection(
    target: Target,
) -> Iterator[psycopg.Connection[Any]]:
    """A connection for an admin function.

    Given a psycopg connection, use it as is: the statements join the caller's
    transaction and the caller commits. Given settings or a URL, open an
    autocommit connection for the call and close it afterwards.
    """
    if isinstance(target, psycopg.Connection):
        yield target
        return
    wait = target.connect_timeout if isinstance(target, Settings) else 10.0
    with connect(target, autocommit=True, wait=wait) as conn:
        try:
            yield conn
        except (psycopg.errors.ReadOnlySqlTransaction, ReadOnlyDatabase):
            # pgjobs.db.queries translated it without knowing the target: say which.
            raise read_only(target) from None


#: How PostgreSQL ("too many clients", "remaining connection slots are
#: reserved") and poolers ("no more connections allowed") refuse a
#: connection when they are full.
_NO_FREE_SLOT = (
    "too many clients",
    "remaining connection slots are reserved",
    "no more connections allowed",
    "too many connections",
)


def no_free_slot(exc: BaseException) -> bool:
    """True when ``exc`` says the server has no free connection slot."""
    text = str(exc).lower()
    return any(marker in text for marker in _NO_FREE_SLOT)


#: How PostgreSQL refuses connections while it stops, starts or recovers
#: (SQLSTATE 57P03): a restart, not a misconfiguration.
_RESTARTING = (
    "the database system is shutting down",
    "the database system is starting up",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
    "the database system is not accepting connections",
)

#: Longest a starting worker waits for a server it saw restarting (its
#: socket is gone for a while in between: refused then, not misconfigured).
RESTART_WAIT = 120.0


def restarting(exc: BaseException) -> bool:
    """True when ``exc`` says the server is shutting down or starting up."""
    text = str(exc).lower()
    return any(marker in text for marker in _RESTARTING)


def wait_for_free_slot(call: Callable[[], _T], max_delay: float = 10.0) -> _T:
    """``call()``, retried while the server has no free connection slot or
    is restarting.

    A worker starting next to a full server waits for a slot instead of
    exiting, and one starting while the server restarts waits for it (up to
    ``RESTART_WAIT`` s once a restart was seen): one WARNING when it starts
    waiting, one when it got through. Any other error is raised at once.
    """
    attempt = 0
    since: float | None = None
    restart_seen: float | None = None
    while True:
        try:
            result = call()
        except DatabaseUnavailable as exc:
            now = time.monotonic()
            if restarting(exc) and restart_seen is None:
                restart_seen = now
            waiting_restart = (
                restart_seen is not None and now - restart_seen < RESTART_WAIT
            )
            if not no_free_slot(exc) and not waiting_restart:
                raise
            delay = min(max_delay, 0.2 * 2 ** min(attempt, 16))
            attempt += 1
            if since is None:
                since = now
                reason = str(exc).rsplit(": ", 1)[-1].strip()
                if waiting_restart:
                    logger.warning(
                        "the database is restarting (%s): retrying until it "
                        "accepts connections",
                        reason,
                        extra={"action": "database_restarting"},
                    )
                else:
                    logger.warning(
                        "the database has no free connection slot (%s): "
                        "retrying until one frees",
                        reason,
                        extra={"action": "connection_slots_exhausted"},
                    )
            time.sleep(delay)
            continue
        if since is not None:
            logger.warning(
                ("the database accepts connections again after %.1f s")
                if restart_seen is not None
                else "got a connection slot after %.1f s",
                time.monotonic() - since,
                extra={
                    "action": "database_restarted"
                    if restart_seen is not None
                    else "connection_slots_available"
                },
            )
        return result


def is_read_only(exc: BaseException) -> bool:
    """True when ``exc`` (or what it wraps) is a write refused by a read-only
    server (a hot standby)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, psycopg.errors.ReadOnlySqlTransaction):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def read_only(target: Settings | str) -> ReadOnlyDatabase:
    """The one line for a write sent to a hot standby."""
    where = describe(target) if isinstance(target, Settings) else redact(target)
    return ReadOnlyDatabase(
        f"the database at {where} is a read-only standby (or has "
        "default_transaction_read_only = on): point "
        "PGJOBS_DATABASE_URL at the primary (or list every server with "
        "target_session_attrs=read-write)"
    )
